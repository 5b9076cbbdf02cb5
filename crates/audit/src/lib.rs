//! The audit log's records and their hash chain.
//!
//! Every look at who held an address (an attribution) is made under one of
//! the legal grounds of `../shared/DESIGN.md` ("The law, as code") and for a
//! stated purpose, and is written here before its answer is given: who asked,
//! when, the ground, the purpose, the inputs and the result.
//!
//! Each record carries the SHA-256 of its own content and of the record
//! before it, so changing, inserting or removing a record breaks every hash
//! after it: [`verify`] names the first broken one. The retention purge
//! removes the oldest records and writes a record of its own that carries the
//! hash the remaining chain starts from (its *anchor*), so a purged log still
//! verifies and the purge itself is on the record.
//!
//! The chain shows tampering by anyone without the means to rewrite every
//! later record; against that, copy the head hash (`kanki audit verify`
//! prints it) somewhere the database's writer cannot change.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The legal ground a look at communication data is made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ground {
    /// 同意: the subscriber opted in (warning them of a listed site).
    Consent,
    /// 正当業務行為: a legitimate business act (purpose, necessity,
    /// proportionality).
    LegitimateBusiness,
    /// 緊急避難: emergency evacuation (finding the subscriber behind an
    /// address seen talking to a C&C server, to notify them).
    EmergencyEvacuation,
}

impl Ground {
    pub const ALL: [Ground; 3] = [
        Ground::Consent,
        Ground::LegitimateBusiness,
        Ground::EmergencyEvacuation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ground::Consent => "consent",
            Ground::LegitimateBusiness => "legitimate-business",
            Ground::EmergencyEvacuation => "emergency-evacuation",
        }
    }
}

impl fmt::Display for Ground {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ground {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ground::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown ground {s:?}: one of consent, legitimate-business, emergency-evacuation"
                )
            })
    }
}

/// What is recorded, before it is chained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// Who asked: an operator name, `api:<token name>`, a part of kanki
    /// (`removal`, `retention`).
    pub actor: String,
    /// What was done: `who`, `who-now`, `purge`, ...
    pub action: String,
    /// `None` only for kanki's own housekeeping (the retention purge).
    pub ground: Option<Ground>,
    pub purpose: String,
    /// The inputs, as JSON text (kept byte for byte: the hash covers it).
    pub input: String,
    /// The result, as JSON text.
    pub result: String,
}

impl AuditEntry {
    /// A grant or revocation of a subscriber's consent: who changed it and
    /// through which channel (web, phone, contract, import, api).
    pub fn consent_change(
        at: DateTime<Utc>,
        actor: &str,
        subscriber: &str,
        granted: bool,
        channel: &str,
    ) -> AuditEntry {
        let action = if granted {
            "consent-grant"
        } else {
            "consent-revoke"
        };
        AuditEntry {
            at,
            actor: actor.to_string(),
            action: action.into(),
            ground: Some(Ground::Consent),
            purpose: format!(
                "consent {} through {channel}",
                if granted { "granted" } else { "revoked" }
            ),
            input: serde_json::json!({ "subscriber": subscriber, "channel": channel }).to_string(),
            result: serde_json::json!({ "consent": granted }).to_string(),
        }
    }

    /// One view of data naming a subscriber (a case, an event, a
    /// subscriber's record): who saw it, when, which, and why.
    pub fn view(
        at: DateTime<Utc>,
        actor: &str,
        what: &str,
        id: &str,
        subscriber: Option<&str>,
        purpose: &str,
    ) -> AuditEntry {
        let mut input = serde_json::Map::new();
        input.insert(what.to_string(), id.into());
        if let Some(s) = subscriber {
            input.insert("subscriber".into(), s.into());
        }
        AuditEntry {
            at,
            actor: actor.to_string(),
            action: format!("view-{what}"),
            ground: None,
            purpose: purpose.to_string(),
            input: serde_json::Value::Object(input).to_string(),
            result: "{}".into(),
        }
    }
}

/// A stored record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    pub hash: String,
}

/// The `prev_hash` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record: SHA-256, hex, over its sequence number, every field
/// (each length-prefixed, so no two records share an encoding) and the
/// previous hash.
pub fn record_hash(seq: i64, e: &AuditEntry, prev_hash: &str) -> String {
    // ring's SHA-256 (assembly) rather than sha2's portable one: a bulk
    // lookup's record lists tens of thousands of lookups, megabytes each.
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    h.update(&seq.to_be_bytes());
    let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let ground = e.ground.map_or("", Ground::as_str);
    for field in [
        at.as_str(),
        &e.actor,
        &e.action,
        ground,
        &e.purpose,
        &e.input,
        &e.result,
        prev_hash,
    ] {
        h.update(&(field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finish())
}

/// Why a chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The first record that does not verify.
    pub seq: i64,
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit record {} is broken: {}", self.seq, self.reason)
    }
}

/// The outcome of a successful [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// Hash of the last record (the head), or the anchor for an empty log.
    pub head: String,
}

/// Checks records given in sequence order, starting from `anchor` (the hash
/// the first remaining record must point to: [`GENESIS`] for a log never
/// purged).
pub fn verify(
    records: impl IntoIterator<Item = AuditRecord>,
    anchor: &str,
) -> Result<Verified, Broken> {
    let mut prev = anchor.to_string();
    let mut last_seq: Option<i64> = None;
    let mut n = 0;
    for r in records {
        if let Some(l) = last_seq
            && r.seq != l + 1
        {
            return Err(Broken {
                seq: r.seq,
                reason: format!("follows record {l}: records between them are missing"),
            });
        }
        if r.prev_hash != prev {
            return Err(Broken {
                seq: r.seq,
                reason: "does not point to the record before it (a record was removed, added or changed before it)".into(),
            });
        }
        let want = record_hash(r.seq, &r.entry, &r.prev_hash);
        if r.hash != want {
            return Err(Broken {
                seq: r.seq,
                reason: "its content does not match its hash (it was changed)".into(),
            });
        }
        prev = r.hash;
        last_seq = Some(r.seq);
        n += 1;
    }
    Ok(Verified {
        records: n,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let entry = AuditEntry {
                    at: Utc.timestamp_opt(1_800_000_000 + seq, 0).unwrap(),
                    actor: "ops".into(),
                    action: "who".into(),
                    ground: Some(Ground::EmergencyEvacuation),
                    purpose: format!("case {seq}"),
                    input: format!("{{\"address\":\"192.0.2.{seq}\"}}"),
                    result: "{\"subscriber\":\"S1\"}".into(),
                };
                let hash = record_hash(seq, &entry, &prev);
                let r = AuditRecord {
                    seq,
                    entry,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let v = verify(c.clone(), GENESIS).unwrap();
        assert_eq!(v.records, 5);
        assert_eq!(v.head, c[4].hash);
        // A purged log verifies from its anchor.
        assert_eq!(verify(c[2..].to_vec(), &c[1].hash).unwrap().records, 3);
    }

    #[test]
    fn tampering_names_the_first_broken_record() {
        let mut c = chain(5);
        c[2].entry.purpose = "something else".into();
        assert_eq!(verify(c, GENESIS).unwrap_err().seq, 3);

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(c, GENESIS).unwrap_err().seq, 3);

        // Rehashing the changed record alone does not help: the next one
        // breaks.
        let mut c = chain(5);
        c[2].entry.result = "{\"subscriber\":\"S2\"}".into();
        c[2].hash = record_hash(3, &c[2].entry, &c[2].prev_hash);
        assert_eq!(verify(c, GENESIS).unwrap_err().seq, 4);

        // The oldest records removed without a purge: the anchor does not
        // match.
        let c = chain(5);
        assert_eq!(verify(c[2..].to_vec(), GENESIS).unwrap_err().seq, 3);
    }

    #[test]
    fn grounds_parse() {
        for g in Ground::ALL {
            assert_eq!(g.as_str().parse::<Ground>().unwrap(), g);
        }
        assert!("curiosity".parse::<Ground>().is_err());
    }
}
