//! Pseudonyms: how a subscriber is named to an operator who may not see
//! subscriber identities (an analyst, a notices officer).
//!
//! A pseudonym is a keyed HMAC-SHA256 of the subscriber id under a secret
//! of this installation (made once, kept in the store): stable, so that an
//! analyst can see that two cases are one subscriber's, and not reversible
//! without the key, so that the analyst cannot tell who it is. Whoever
//! holds `read-subscribers` sees the id itself.
//!
//! In an answer, every `"subscriber"` field is replaced by its pseudonym,
//! and the fields that would name or reach the subscriber otherwise (a
//! notice's `recipient` and `body`, which carry an address and the text
//! sent to it) are withheld (`null`).

use ring::hmac;
use serde_json::Value;

use crate::model::{Permission, Principal};

/// Fields that hold a subscriber id.
const SUBSCRIBER_FIELDS: &[&str] = &["subscriber"];
/// Fields that would identify or reach a subscriber otherwise.
const WITHHELD_FIELDS: &[&str] = &["recipient", "body", "email", "postal_address"];

/// The installation's pseudonym key.
pub struct Pseudonyms {
    key: hmac::Key,
}

impl Pseudonyms {
    /// Pseudonyms under `key` (the installation's secret, at least 32
    /// bytes).
    pub fn new(key: &[u8]) -> Pseudonyms {
        Pseudonyms {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A new random key, for an installation that has none yet.
    pub fn new_key() -> [u8; 32] {
        crate::secret::random_bytes()
    }

    /// A subscriber's pseudonym: `p-` and 20 hex characters (80 bits of
    /// the HMAC: no collision among any ISP's subscribers to speak of).
    pub fn of(&self, subscriber: &str) -> String {
        let tag = hmac::sign(&self.key, subscriber.as_bytes());
        format!("p-{}", hex::encode(&tag.as_ref()[..10]))
    }

    /// An answer as `caller` may see it: unchanged for who may read
    /// subscriber identities; else subscribers by pseudonym and what would
    /// identify them withheld, at any depth.
    pub fn shown_to(&self, caller: &Principal, answer: Value) -> Value {
        if caller.may(Permission::ReadSubscribers) {
            return answer;
        }
        self.pseudonymize(answer)
    }

    fn pseudonymize(&self, v: Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let v = if SUBSCRIBER_FIELDS.contains(&k.as_str()) {
                            match v {
                                Value::String(s) => Value::String(self.of(&s)),
                                other => self.pseudonymize(other),
                            }
                        } else if WITHHELD_FIELDS.contains(&k.as_str()) {
                            Value::Null
                        } else {
                            self.pseudonymize(v)
                        };
                        (k, v)
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.pseudonymize(v)).collect())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, Roles};
    use serde_json::json;

    fn principal(role: Role) -> Principal {
        let roles: Roles = role.into();
        Principal {
            operator_id: 1,
            operator: "x".into(),
            token: None,
            roles,
            permissions: roles.permissions(),
            csrf: None,
        }
    }

    #[test]
    fn analysts_see_stable_pseudonyms_and_no_address() {
        let p = Pseudonyms::new(&[7; 32]);
        let case = json!({
            "case": {"id": 1, "subscriber": "S1", "threat": "mirai"},
            "notices": [{"subscriber": "S1", "recipient": "s1@example.jp", "body": "Dear S1", "subject": "Infection"}],
            "events": [{"attribution": {"subscriber": "S1", "address": "192.0.2.1"}}],
        });
        let seen = p.shown_to(&principal(Role::Analyst), case.clone());
        let pseudonym = p.of("S1");
        assert!(pseudonym.starts_with("p-") && pseudonym.len() == 22);
        assert_eq!(seen["case"]["subscriber"], pseudonym);
        assert_eq!(seen["notices"][0]["subscriber"], pseudonym);
        assert_eq!(seen["events"][0]["attribution"]["subscriber"], pseudonym);
        assert_eq!(seen["notices"][0]["recipient"], Value::Null);
        assert_eq!(seen["notices"][0]["body"], Value::Null);
        assert_eq!(seen["notices"][0]["subject"], "Infection");
        assert!(!seen.to_string().contains("S1"), "{seen}");
        // Stable, and another subscriber gets another; another key, another.
        assert_eq!(p.of("S1"), pseudonym);
        assert_ne!(p.of("S2"), pseudonym);
        assert_ne!(Pseudonyms::new(&[8; 32]).of("S1"), pseudonym);
        // The attribution officer sees the answer as it is.
        assert_eq!(
            p.shown_to(&principal(Role::AttributionOfficer), case.clone()),
            case
        );
    }
}
