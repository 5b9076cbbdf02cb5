//! The subscriber list an ISP exports from its customer system, as CSV.
//!
//! Read by header (column order is free, unknown columns are an error so a
//! misspelt one is not silently ignored). Columns:
//!
//! | column | required | meaning |
//! | --- | --- | --- |
//! | `id` | yes | the ISP's subscriber id (also a RADIUS login name) |
//! | `email` | yes (may be empty) | contact address for notices |
//! | `language` | yes | `ja` or `en` (empty: `ja`) |
//! | `consent` | yes | `yes`/`no` (`true`/`false`, `1`/`0`, `granted`/`revoked`); empty: leave as is |
//! | `postal_address` | no | for letters |
//! | `plan` | no | the service plan |
//! | `logins` | no | more RADIUS login names, `;`-separated |
//! | `client_ids` | no | DHCP client ids / DUIDs (hex), `;`-separated |
//! | `hw_addrs` | no | hardware (MAC) addresses, `;`-separated |

use std::io::Read;

use crate::types::{Skipped, Subject, SubjectKind};

/// A subscriber as imported or edited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberRecord {
    pub id: String,
    pub email: Option<String>,
    pub postal_address: Option<String>,
    /// `ja` or `en`.
    pub language: String,
    pub plan: Option<String>,
    /// `None`: leave consent as it is (a new subscriber starts without).
    pub consent: Option<bool>,
    /// Identifiers beyond the id itself (which is always a login name too).
    pub identifiers: Vec<Subject>,
}

/// One row read: a record, or a skipped line with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriberRow {
    Record(SubscriberRecord),
    Skip(Skipped),
}

const REQUIRED: [&str; 4] = ["id", "email", "language", "consent"];
const OPTIONAL: [&str; 5] = ["postal_address", "plan", "logins", "client_ids", "hw_addrs"];

/// Parses a consent cell: `Some(Some(b))`, `Some(None)` for empty, `None`
/// for anything else.
fn consent(s: &str) -> Option<Option<bool>> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" => Some(None),
        "yes" | "y" | "true" | "1" | "granted" | "grant" => Some(Some(true)),
        "no" | "n" | "false" | "0" | "revoked" | "revoke" => Some(Some(false)),
        _ => None,
    }
}

/// Reads a subscriber CSV. A bad header is an error (nothing is read); a
/// bad row is skipped with its reason.
pub fn read_subscribers(
    input: impl Read,
) -> Result<impl Iterator<Item = Result<SubscriberRow, std::io::Error>>, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = r
        .headers()
        .map_err(|e| format!("cannot read the header line: {e}"))?
        .clone();
    let names: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    for n in &names {
        if !REQUIRED.contains(&n.as_str()) && !OPTIONAL.contains(&n.as_str()) {
            return Err(format!(
                "unknown column {n:?}; known: {}",
                REQUIRED
                    .iter()
                    .chain(OPTIONAL.iter())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for req in REQUIRED {
        if !names.iter().any(|n| n == req) {
            return Err(format!(
                "missing column {req:?} (the header needs id,email,language,consent)"
            ));
        }
    }
    let col = move |name: &str| names.iter().position(|n| n == name);
    let (id, email, lang, cons) = (
        col("id").expect("checked"),
        col("email").expect("checked"),
        col("language").expect("checked"),
        col("consent").expect("checked"),
    );
    let (postal, plan, logins, cids, hws) = (
        col("postal_address"),
        col("plan"),
        col("logins"),
        col("client_ids"),
        col("hw_addrs"),
    );
    Ok(r.into_records().map(move |rec| {
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                return match e.kind() {
                    csv::ErrorKind::Io(_) => Err(std::io::Error::other(e.to_string())),
                    _ => Ok(SubscriberRow::Skip(Skipped {
                        line: e.position().map_or(0, |p| p.line()),
                        reason: "malformed CSV".into(),
                    })),
                };
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let skip = |reason: &str| {
            Ok(SubscriberRow::Skip(Skipped {
                line,
                reason: reason.into(),
            }))
        };
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).filter(|s| !s.is_empty());
        let Some(sid) = get(Some(id)) else {
            return skip("empty id");
        };
        let language = match get(Some(lang)).map(str::to_ascii_lowercase).as_deref() {
            None | Some("ja") => "ja",
            Some("en") => "en",
            Some(_) => return skip("language is not ja or en"),
        };
        let Some(consent) = consent(get(Some(cons)).unwrap_or("")) else {
            return skip("consent is not yes or no");
        };
        let mut identifiers = Vec::new();
        for (i, kind) in [
            (logins, SubjectKind::Login),
            (cids, SubjectKind::ClientId),
            (hws, SubjectKind::HwAddr),
        ] {
            for v in get(i)
                .unwrap_or("")
                .split(';')
                .filter(|v| !v.trim().is_empty())
            {
                match Subject::new(kind, v) {
                    Some(s) => identifiers.push(s),
                    None => return skip(&format!("bad {kind} {v:?}")),
                }
            }
        }
        Ok(SubscriberRow::Record(SubscriberRecord {
            id: sid.to_string(),
            email: get(Some(email)).map(str::to_string),
            postal_address: get(postal).map(str::to_string),
            language: language.into(),
            plan: get(plan).map(str::to_string),
            consent,
            identifiers,
        }))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<SubscriberRow> {
        read_subscribers(text.as_bytes())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn reads_by_header_and_skips_bad_rows_with_reasons() {
        let got = rows(
            "consent,id,language,email,hw_addrs,logins\n\
             yes,S1,ja,s1@example.jp,00:11:22:33:44:55,s1@isp;s1b@isp\n\
             no,S2,EN,,,\n\
             maybe,S3,ja,s3@example.jp,,\n\
             yes,S4,fr,s4@example.jp,,\n\
             yes,,ja,x@example.jp,,\n\
             ,S5,,,aa:bb,\n",
        );
        let SubscriberRow::Record(s1) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(s1.consent, Some(true));
        assert_eq!(s1.identifiers.len(), 3);
        let SubscriberRow::Record(s2) = &got[1] else {
            panic!()
        };
        assert_eq!(
            (s2.language.as_str(), s2.consent, s2.email.as_deref()),
            ("en", Some(false), None)
        );
        let skips: Vec<(u64, &str)> = got
            .iter()
            .filter_map(|r| match r {
                SubscriberRow::Skip(s) => Some((s.line, s.reason.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            skips,
            [
                (4, "consent is not yes or no"),
                (5, "language is not ja or en"),
                (6, "empty id"),
                (7, "bad hw-addr \"aa:bb\"")
            ]
        );
    }

    #[test]
    fn a_bad_header_is_refused() {
        assert!(read_subscribers("id,email,language\n".as_bytes()).is_err());
        assert!(read_subscribers("id,email,language,consent,colour\n".as_bytes()).is_err());
    }
}
