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
//! removes the oldest records and writes a record of its own whose result
//! names the record the remaining chain starts after and its hash (the
//! chain's [`Anchor`]), so a purged log still verifies, the purge itself is
//! on the record, and removing the oldest records without a purge shows.
//!
//! The chain shows tampering by anyone without the means to rewrite every
//! later record. Against one who can (the database's writer), kanki signs
//! the chain's head on a schedule ([`checkpoint`]) and ships it where that
//! writer cannot reach; [`Verifier::expect`] then finds a chain cut short
//! or rewritten after a checkpoint.
//!
//! Verification streams: a [`Verifier`] takes one record at a time and
//! keeps only the previous hash, whatever the log's size.

pub mod checkpoint;

use std::collections::BTreeMap;
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

    /// A change to an operator account or a token (disabled, enabled,
    /// roles set, revoked) made by an administrator: `action` names it,
    /// `input` says which account or token and `result` what it is now.
    pub fn account_change(
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        input: serde_json::Value,
        result: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor: actor.to_string(),
            action: action.to_string(),
            ground: None,
            purpose: "account administration".into(),
            input: input.to_string(),
            result: result.to_string(),
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
    /// The first and the last record's sequence numbers (none: empty log).
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Hash of the last record (the head), or the anchor for an empty log.
    pub head: String,
    /// The anchor of a purged log, as its purge record names it.
    pub anchor: Option<Anchor>,
    /// Checkpoints ([`Verifier::expect`]) whose record is in the log with
    /// the signed hash.
    pub checkpoints_confirmed: u64,
    /// Checkpoints of records since purged (at or before the anchor).
    pub checkpoints_purged: u64,
}

/// Where a purged chain starts: the last record the purge removed, and
/// its hash, which the first remaining record points to. The purge
/// record's result carries it (`"anchor": {"seq": N, "hash": "..."}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl Anchor {
    /// The anchor a purge record names, if `r` is one that names it.
    pub fn named_by(r: &AuditRecord) -> Option<Anchor> {
        if r.entry.action != PURGE_ACTION {
            return None;
        }
        #[derive(Deserialize)]
        struct Result {
            anchor: Option<Anchor>,
        }
        serde_json::from_str::<Result>(&r.entry.result).ok()?.anchor
    }
}

/// The action of the retention purge's own record.
pub const PURGE_ACTION: &str = "purge";

/// Checks records one at a time, in sequence order, keeping only what the
/// next record is checked against: memory stays the same for a log of a
/// thousand records or of a billion.
///
/// A log that does not start at the genesis must have a purge record
/// (after its start) naming the record it starts after and that record's
/// hash; otherwise its oldest records were removed by something other than
/// the purge.
#[derive(Clone, Debug)]
pub struct Verifier {
    prev: String,
    first: Option<(i64, String)>,
    last_seq: Option<i64>,
    records: u64,
    /// The anchor named by the newest purge record seen.
    named: Option<Anchor>,
    /// Heads signed in checkpoints: record seq must have this hash.
    expected: BTreeMap<i64, String>,
    /// Checkpoints met in the chain.
    confirmed: u64,
    broken: Option<Broken>,
}

impl Verifier {
    /// A verifier for records starting after `anchor` (the hash the first
    /// remaining record points to, as the store keeps it: [`GENESIS`] for
    /// a log never purged).
    pub fn new(anchor: &str) -> Verifier {
        Verifier {
            prev: anchor.to_string(),
            first: None,
            last_seq: None,
            records: 0,
            named: None,
            expected: BTreeMap::new(),
            confirmed: 0,
            broken: None,
        }
    }

    /// Also checks that record `seq` has hash `hash` (a signed checkpoint
    /// of the head, kept where the database's writer cannot change it): a
    /// log that ends before `seq`, or holds another record at `seq`, was
    /// cut short or rewritten.
    pub fn expect(&mut self, seq: i64, hash: &str) {
        self.expected.insert(seq, hash.to_string());
    }

    /// Takes the next record. After the first broken one, the rest are
    /// ignored (the first is what an operator needs).
    pub fn push(&mut self, r: &AuditRecord) {
        if self.broken.is_some() {
            return;
        }
        if let Err(b) = self.check(r) {
            self.broken = Some(b);
        }
    }

    fn check(&mut self, r: &AuditRecord) -> Result<(), Broken> {
        let broken = |reason: String| Broken { seq: r.seq, reason };
        if let Some(l) = self.last_seq
            && r.seq != l + 1
        {
            return Err(broken(format!(
                "follows record {l}: records between them are missing"
            )));
        }
        if r.prev_hash != self.prev {
            return Err(broken("does not point to the record before it (a record was removed, added or changed before it)".into()));
        }
        let want = record_hash(r.seq, &r.entry, &r.prev_hash);
        if r.hash != want {
            return Err(broken(
                "its content does not match its hash (it was changed)".into(),
            ));
        }
        if let Some(h) = self.expected.remove(&r.seq) {
            if h != r.hash {
                return Err(broken(format!(
                    "a checkpoint signed hash {h} for this record: the log was rewritten"
                )));
            }
            self.confirmed += 1;
        }
        if self.first.is_none() {
            self.first = Some((r.seq, r.prev_hash.clone()));
        }
        if let Some(a) = Anchor::named_by(r) {
            self.named = Some(a);
        }
        self.prev = r.hash.clone();
        self.last_seq = Some(r.seq);
        self.records += 1;
        Ok(())
    }

    /// The outcome, once every record was pushed.
    pub fn finish(self) -> Result<Verified, Broken> {
        if let Some(b) = self.broken {
            return Err(b);
        }
        if let Some((seq, prev)) = &self.first
            && !(*seq == 1 && prev == GENESIS)
        {
            let start = Anchor {
                seq: seq - 1,
                hash: prev.clone(),
            };
            if self.named.as_ref() != Some(&start) {
                return Err(Broken {
                    seq: *seq,
                    reason: format!(
                        "the log starts after record {}, and no purge record names that record and its hash (the oldest records were removed outside a purge)",
                        start.seq
                    ),
                });
            }
        }
        // Checkpoints not met: before the log's start (purged) or past its
        // end (cut short).
        let mut purged = 0;
        for (seq, hash) in &self.expected {
            match (&self.first, self.last_seq) {
                (_, Some(last)) if *seq > last => {
                    return Err(Broken {
                        seq: *seq,
                        reason: format!(
                            "a checkpoint signed record {seq}, but the log ends at record {last}: it was cut short"
                        ),
                    });
                }
                (None, _) => {
                    return Err(Broken {
                        seq: *seq,
                        reason: format!(
                            "a checkpoint signed record {seq}, but the log is empty: it was cut short"
                        ),
                    });
                }
                (Some((first, prev)), _) if *seq == first - 1 && hash != prev => {
                    return Err(Broken {
                        seq: *seq,
                        reason: format!(
                            "a checkpoint signed hash {hash} for record {seq}, which the log starts after with another hash: it was rewritten"
                        ),
                    });
                }
                _ => purged += 1,
            }
        }
        Ok(Verified {
            records: self.records,
            checkpoints_confirmed: self.confirmed,
            checkpoints_purged: purged,
            first: self.first.map(|(s, _)| s),
            last: self.last_seq,
            head: self.prev,
            anchor: self.named,
        })
    }
}

/// Checks records given in sequence order, starting from `anchor` (the hash
/// the first remaining record points to: [`GENESIS`] for a log never
/// purged). Streams: see [`Verifier`].
pub fn verify<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    anchor: &str,
) -> Result<Verified, Broken> {
    let mut v = Verifier::new(anchor);
    for r in records {
        v.push(r);
    }
    v.finish()
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
        let v = verify(&c, GENESIS).unwrap();
        assert_eq!(v.records, 5);
        assert_eq!(v.head, c[4].hash);
    }

    /// Appends a purge record naming `anchor` to `c`.
    fn purged(mut c: Vec<AuditRecord>, anchor: Option<Anchor>) -> Vec<AuditRecord> {
        let last = c.last().unwrap();
        let (seq, prev) = (last.seq + 1, last.hash.clone());
        let entry = AuditEntry {
            at: last.entry.at,
            actor: "retention".into(),
            action: PURGE_ACTION.into(),
            ground: None,
            purpose: "retention".into(),
            input: "{}".into(),
            result: serde_json::json!({ "audit_records": 2, "anchor": anchor }).to_string(),
        };
        let hash = record_hash(seq, &entry, &prev);
        c.push(AuditRecord {
            seq,
            entry,
            prev_hash: prev,
            hash,
        });
        c
    }

    #[test]
    fn a_purged_log_verifies_from_the_anchor_its_purge_record_names() {
        let c = chain(5);
        let anchor = Anchor {
            seq: 2,
            hash: c[1].hash.clone(),
        };
        let kept = purged(c[2..].to_vec(), Some(anchor.clone()));
        let v = verify(&kept, &c[1].hash).unwrap();
        assert_eq!((v.records, v.first, v.anchor), (4, Some(3), Some(anchor)));

        // The oldest records removed, and the stored anchor set to match,
        // without a purge record saying so: caught.
        let e = verify(&c[2..], &c[1].hash).unwrap_err();
        assert_eq!(e.seq, 3);
        assert!(e.reason.contains("no purge record"), "{e}");
        // A purge record naming another start: caught.
        let wrong = purged(
            c[3..].to_vec(),
            Some(Anchor {
                seq: 2,
                hash: c[1].hash.clone(),
            }),
        );
        assert_eq!(verify(&wrong, &c[2].hash).unwrap_err().seq, 4);
    }

    #[test]
    fn checkpoints_catch_a_log_cut_short_or_rewritten() {
        let c = chain(6);
        let check = |log: &[AuditRecord], cp: &AuditRecord| {
            let mut v = Verifier::new(GENESIS);
            v.expect(cp.seq, &cp.hash);
            for r in log {
                v.push(r);
            }
            v.finish()
        };
        let v = check(&c, &c[3]).unwrap();
        assert_eq!(v.checkpoints_confirmed, 1);
        // Cut short after the checkpoint: the chain still links.
        let e = check(&c[..3], &c[3]).unwrap_err();
        assert!(e.reason.contains("cut short"), "{e}");
        // Rewritten from record 3 on, every hash recomputed: the chain
        // links, the checkpoint does not match.
        let mut forged = c[..2].to_vec();
        let mut prev = c[1].hash.clone();
        for r in &c[2..] {
            let mut r = r.clone();
            r.entry.result = "{\"subscriber\":\"S9\"}".into();
            r.prev_hash = prev;
            r.hash = record_hash(r.seq, &r.entry, &r.prev_hash);
            prev = r.hash.clone();
            forged.push(r);
        }
        assert!(verify(&forged, GENESIS).is_ok());
        let e = check(&forged, &c[3]).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(e.reason.contains("rewritten"), "{e}");
    }

    #[test]
    fn tampering_names_the_first_broken_record() {
        let mut c = chain(5);
        c[2].entry.purpose = "something else".into();
        assert_eq!(verify(&c, GENESIS).unwrap_err().seq, 3);

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c, GENESIS).unwrap_err().seq, 3);

        // Rehashing the changed record alone does not help: the next one
        // breaks.
        let mut c = chain(5);
        c[2].entry.result = "{\"subscriber\":\"S2\"}".into();
        c[2].hash = record_hash(3, &c[2].entry, &c[2].prev_hash);
        assert_eq!(verify(&c, GENESIS).unwrap_err().seq, 4);

        // The oldest records removed without a purge: the anchor does not
        // match.
        let c = chain(5);
        assert_eq!(verify(&c[2..], GENESIS).unwrap_err().seq, 3);
    }

    #[test]
    fn grounds_parse() {
        for g in Ground::ALL {
            assert_eq!(g.as_str().parse::<Ground>().unwrap(), g);
        }
        assert!("curiosity".parse::<Ground>().is_err());
    }
}
