//! Signed checkpoints of the chain's head.
//!
//! The hash chain shows a change to a record, but whoever can write the
//! database can also rewrite every record after the change, or cut the
//! newest records off. A checkpoint is the head (`seq`, `hash`) at a time,
//! signed with an Ed25519 key that the database's writer does not hold, as
//! one line of text. `kanki serve` writes one on a schedule to a file or to
//! syslog, which the operator ships elsewhere; `kanki audit verify
//! --checkpoint FILE` then holds the log to every checkpoint in that file:
//! a log ending before a checkpointed record was cut short, one holding
//! another hash there was rewritten.
//!
//! Ed25519 is ring's (already kanki's crypto library; it signs and
//! verifies in constant time and reads PKCS#8 keys, including those of
//! `openssl genpkey -algorithm ed25519`), so no second implementation.
//!
//! A line reads
//! `kanki-audit-checkpoint v1 seq=N hash=HEX at=RFC3339 key=HEX sig=HEX`;
//! anything before `kanki-audit-checkpoint` (a syslog prefix) is ignored,
//! so a syslog file is itself a checkpoint file.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use data_encoding::BASE64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// What begins every checkpoint line.
pub const TAG: &str = "kanki-audit-checkpoint";

/// The longest checkpoint line read, in bytes (a line is about 330).
pub const MAX_LINE: usize = 1024;

/// Why a checkpoint line, its signature or a signing key was refused, in
/// words for an operator.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("no {TAG} in the line")]
    NoTag,
    #[error("not a v1 checkpoint")]
    NotV1,
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("{0} given twice")]
    GivenTwice(String),
    #[error("no {0}=")]
    Missing(&'static str),
    #[error("{name} is not {len} hex digits")]
    NotHex { name: &'static str, len: usize },
    #[error("seq is not a number")]
    SeqNotNumber,
    #[error("at: {0}")]
    At(chrono::ParseError),
    #[error("signed by key {signed}, not by {expected}")]
    OtherKey { signed: String, expected: String },
    #[error("key or signature is not hex")]
    NotHexKeyOrSignature,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("not PEM: {0}")]
    NotPem(data_encoding::DecodeError),
    #[error("not an Ed25519 PKCS#8 key: {0}")]
    NotEd25519Key(ring::error::KeyRejected),
    #[error("cannot read {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: Box<CheckpointError>,
    },
    #[error("line {line}: {source}")]
    Line {
        line: usize,
        source: Box<CheckpointError>,
    },
}

/// A signed head of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The head's sequence number (0: the log was empty).
    pub seq: i64,
    /// The head's hash (the anchor, for an empty log).
    pub hash: String,
    pub at: DateTime<Utc>,
    /// The signer's Ed25519 public key, hex.
    pub key: String,
    /// The signature over [`Checkpoint::message`], hex.
    pub sig: String,
}

impl Checkpoint {
    /// The signed bytes: a fixed label, then each field on its own line.
    fn message(seq: i64, hash: &str, at: &str) -> Vec<u8> {
        format!("{TAG}-v1\n{seq}\n{hash}\n{at}").into_bytes()
    }

    fn at_text(&self) -> String {
        self.at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// Reads a checkpoint line (see the module doc).
    pub fn parse(line: &str) -> Result<Checkpoint, CheckpointError> {
        if line.len() > MAX_LINE {
            return Err(CheckpointError::TooLong);
        }
        let start = line.find(TAG).ok_or(CheckpointError::NoTag)?;
        let mut words = line[start + TAG.len()..].split_ascii_whitespace();
        if words.next() != Some("v1") {
            return Err(CheckpointError::NotV1);
        }
        let (mut seq, mut hash, mut at, mut key, mut sig) = (None, None, None, None, None);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| CheckpointError::NotKeyValue(w.to_string()))?;
            let slot = match k {
                "seq" => &mut seq,
                "hash" => &mut hash,
                "at" => &mut at,
                "key" => &mut key,
                "sig" => &mut sig,
                _ => return Err(CheckpointError::UnknownField(k.to_string())),
            };
            if slot.replace(v).is_some() {
                return Err(CheckpointError::GivenTwice(k.to_string()));
            }
        }
        let hex_of = |v: &str, name: &'static str, len: usize| {
            if v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(CheckpointError::NotHex { name, len })
            }
        };
        Ok(Checkpoint {
            seq: need(seq, "seq")?
                .parse()
                .map_err(|_| CheckpointError::SeqNotNumber)?,
            hash: hex_of(need(hash, "hash")?, "hash", 64)?,
            // To the microsecond, as written and signed: a line of finer
            // time reads as the checkpoint it writes back.
            at: DateTime::parse_from_rfc3339(need(at, "at")?)
                .map_err(CheckpointError::At)?
                .with_timezone(&Utc)
                .trunc_subsecs(6),
            key: hex_of(need(key, "key")?, "key", 64)?,
            sig: hex_of(need(sig, "sig")?, "sig", 128)?,
        })
    }

    /// Checks the signature, by `key` when given (hex), else by the key the
    /// line names.
    pub fn verify_signature(&self, key: Option<&str>) -> Result<(), CheckpointError> {
        if let Some(k) = key
            && !k.eq_ignore_ascii_case(&self.key)
        {
            return Err(CheckpointError::OtherKey {
                signed: self.key.clone(),
                expected: k.to_string(),
            });
        }
        let (Ok(pk), Ok(sig)) = (hex::decode(&self.key), hex::decode(&self.sig)) else {
            return Err(CheckpointError::NotHexKeyOrSignature);
        };
        UnparsedPublicKey::new(&ED25519, pk)
            .verify(&Self::message(self.seq, &self.hash, &self.at_text()), &sig)
            .map_err(|_| CheckpointError::BadSignature)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG} v1 seq={} hash={} at={} key={} sig={}",
            self.seq,
            self.hash,
            self.at_text(),
            self.key,
            self.sig
        )
    }
}

fn need<'a>(v: Option<&'a str>, name: &'static str) -> Result<&'a str, CheckpointError> {
    v.ok_or(CheckpointError::Missing(name))
}

/// The signing key, read from a file: PKCS#8, DER or PEM (`kanki audit
/// keygen` writes one; `openssl genpkey -algorithm ed25519` too).
pub struct Signer {
    key: Ed25519KeyPair,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer(public key {})", self.public_key())
    }
}

impl Signer {
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Signer, CheckpointError> {
        let der = match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => {
                let b64: String = text
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .flat_map(|l| l.trim().chars())
                    .collect();
                BASE64
                    .decode(b64.as_bytes())
                    .map_err(CheckpointError::NotPem)?
            }
            _ => bytes.to_vec(),
        };
        // "maybe_unchecked" reads PKCS#8 v1 (OpenSSL's, without the public
        // key) as well as v2; the public key is derived either way.
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(|key| Signer { key })
            .map_err(CheckpointError::NotEd25519Key)
    }

    pub fn from_file(path: &Path) -> Result<Signer, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::ReadKey {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pkcs8(&bytes).map_err(|e| CheckpointError::KeyFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// A new key, PKCS#8 (v2) DER, for a key file.
    pub fn generate() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("system randomness")
            .as_ref()
            .to_vec()
    }

    /// The public key, hex: what a verifier is given.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.public_key().as_ref())
    }

    /// A checkpoint of the head `(seq, hash)` at `at`.
    pub fn sign(&self, seq: i64, hash: &str, at: DateTime<Utc>) -> Checkpoint {
        let mut c = Checkpoint {
            seq,
            hash: hash.to_ascii_lowercase(),
            at,
            key: self.public_key(),
            sig: String::new(),
        };
        let msg = Checkpoint::message(seq, &c.hash, &c.at_text());
        c.sig = hex::encode(self.key.sign(&msg).as_ref());
        c
    }
}

/// The checkpoints of a file's text, each line that holds one; a line
/// that names itself a checkpoint but does not read or verify is an error
/// (someone tampered with the shipped file, or it is not ours).
pub fn read_all(text: &str, key: Option<&str>) -> Result<Vec<Checkpoint>, CheckpointError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.contains(TAG) {
            continue;
        }
        let c = Checkpoint::parse(line)
            .and_then(|c| c.verify_signature(key).map(|()| c))
            .map_err(|e| CheckpointError::Line {
                line: i + 1,
                source: Box::new(e),
            })?;
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_checkpoint_round_trips_and_its_signature_holds_only_for_its_content() {
        let s = Signer::from_pkcs8(&Signer::generate()).unwrap();
        let at = Utc.timestamp_opt(1_800_000_000, 5000).unwrap();
        let c = s.sign(42, &"ab".repeat(32), at);
        let line = format!("Dec  7 01:00:00 host kanki[1]: {c}");
        let back = Checkpoint::parse(&line).unwrap();
        assert_eq!(back, c);
        back.verify_signature(Some(&s.public_key())).unwrap();
        let other = Signer::from_pkcs8(&Signer::generate()).unwrap();
        assert!(matches!(
            back.verify_signature(Some(&other.public_key())),
            Err(CheckpointError::OtherKey { .. })
        ));
        // Any field changed: the signature fails.
        for (from, to) in [("seq=42", "seq=43"), ("hash=abab", "hash=bbab")] {
            let forged = line.replacen(from, to, 1);
            let f = Checkpoint::parse(&forged).unwrap();
            assert!(
                matches!(f.verify_signature(None), Err(CheckpointError::BadSignature)),
                "{forged}"
            );
        }
        assert_eq!(
            read_all(&format!("noise\n{line}\n"), None).unwrap().len(),
            1
        );
        let e = read_all(&line.replacen("seq=42", "seq=41", 1), None).unwrap_err();
        assert_eq!(e.to_string(), "line 1: the signature does not verify");
        for (junk, why) in [
            (TAG.to_string(), "not a v1 checkpoint"),
            (format!("{TAG} v1 seq=1"), "no hash="),
            (
                format!("{TAG} v1 seq=x hash=00 at=now key=00 sig=00"),
                "seq is not a number",
            ),
            (
                format!("{TAG} v1 seq=1 hash=00"),
                "hash is not 64 hex digits",
            ),
            (format!("{TAG} v2"), "not a v1 checkpoint"),
            (format!("{TAG} v1 seq=1 seq=2"), "seq given twice"),
            ("x".repeat(MAX_LINE + 1), "longer than 1024 bytes"),
        ] {
            let e = Checkpoint::parse(&junk).unwrap_err();
            assert_eq!(e.to_string(), why, "{junk}");
        }
    }

    #[test]
    fn an_openssl_pem_key_is_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1, no public key).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEICAjtwIqCwdBRmENmo4C93U5bmvPIOskMRZTzVZ/g4XW\n-----END PRIVATE KEY-----\n";
        let s = Signer::from_pkcs8(pem.as_bytes()).unwrap();
        assert_eq!(s.public_key().len(), 64);
        assert!(matches!(
            Signer::from_pkcs8(b"not a key"),
            Err(CheckpointError::NotEd25519Key(_))
        ));
    }
}
