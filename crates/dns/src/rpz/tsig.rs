//! TSIG (RFC 8945): checking signed requests and signing responses,
//! including the chained MACs of a multi-message zone transfer.
//!
//! hickory-proto parses the TSIG record, builds the data a request's MAC
//! covers ([`signed_bitmessage_to_buf`]) and computes HMACs with ring; this
//! module adds what a server needs around that: key lookup, the time check,
//! the error answers of section 5.2, and response signing where each
//! message's MAC covers the previous one's (section 5.3.1).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::tsig::{
    TSIG, TsigAlgorithm, TsigError, make_tsig_record, signed_bitmessage_to_buf,
};
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

/// Seconds of clock difference a signature may have (RFC 8945 suggests 300).
pub const FUDGE: u16 = 300;

/// A shared secret key.
pub struct TsigKey {
    /// Lowercase, absolute.
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_string())
            .field("algorithm", &self.algorithm.to_string())
            .finish()
    }
}

impl TsigKey {
    /// A key from its configuration spelling: name, algorithm
    /// (`hmac-sha256`, `hmac-sha384`, `hmac-sha512`) and decoded secret.
    pub fn new(name: &str, algorithm: &str, secret: Vec<u8>) -> Result<TsigKey, String> {
        let mut name = Name::from_ascii(name.trim())
            .map_err(|e| format!("TSIG key name {name:?}: {e}"))?
            .to_lowercase();
        name.set_fqdn(true);
        let mut alg_name = Name::from_ascii(algorithm.trim().to_ascii_lowercase())
            .map_err(|e| format!("TSIG algorithm {algorithm:?}: {e}"))?;
        alg_name.set_fqdn(false);
        let algorithm = TsigAlgorithm::from_name(alg_name);
        if !algorithm.supported() {
            return Err(format!("unsupported TSIG algorithm {algorithm}"));
        }
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        self.algorithm
            .mac_data(&self.secret, data)
            .expect("the algorithm was checked when the key was made")
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a request's TSIG says.
pub enum Checked {
    /// No TSIG record.
    Unsigned,
    /// Signed with this key, and the MAC and time are good: sign the answer
    /// with [`Signer::response`].
    Valid { key: Arc<TsigKey>, mac: Vec<u8> },
    /// Signed, but not acceptably: answer NOTAUTH with this error in an
    /// unsigned TSIG record (or, for BADTIME, a signed one).
    Invalid(Invalid),
}

/// A TSIG that failed, with what the error answer needs.
pub struct Invalid {
    pub error: TsigError,
    pub key_name: Name,
    pub algorithm: TsigAlgorithm,
    /// For BADTIME: the key and the request MAC, to sign the error answer.
    pub signer: Option<(Arc<TsigKey>, Vec<u8>)>,
}

/// Checks the TSIG of a request (`raw`, as received) against `keys`.
/// A record that is not the last of the message, or a message hickory
/// cannot read, is the caller's FORMERR: it has already parsed it.
pub fn check(raw: &[u8], keys: &[Arc<TsigKey>], now: u64) -> Checked {
    let Ok((tbs, record)) = signed_bitmessage_to_buf(raw, None, true) else {
        return Checked::Unsigned;
    };
    let tsig = &record.data;
    let key_name = record.name.to_lowercase();
    let invalid = |error, signer| {
        Checked::Invalid(Invalid {
            error,
            key_name: key_name.clone(),
            algorithm: tsig.algorithm.clone(),
            signer,
        })
    };
    let Some(key) = keys
        .iter()
        .find(|k| k.name == key_name && k.algorithm == tsig.algorithm)
    else {
        return invalid(TsigError::BadKey, None);
    };
    if key
        .algorithm
        .verify_mac(&key.secret, &tbs, &tsig.mac)
        .is_err()
    {
        return invalid(TsigError::BadSig, None);
    }
    if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
        return invalid(TsigError::BadTime, Some((key.clone(), tsig.mac.clone())));
    }
    Checked::Valid {
        key: key.clone(),
        mac: tsig.mac.clone(),
    }
}

/// Signs the messages of one answer (or one request), each MAC covering
/// the one before.
pub struct Signer {
    key: Arc<TsigKey>,
    /// The request MAC, then each message's MAC; `None` when signing a
    /// request.
    prior: Option<Vec<u8>>,
    first: bool,
    time: u64,
    error: Option<TsigError>,
}

impl Signer {
    /// For the answer to a request whose MAC was `request_mac`.
    pub fn response(key: Arc<TsigKey>, request_mac: Vec<u8>, time: u64) -> Signer {
        Signer {
            key,
            prior: Some(request_mac),
            first: true,
            time,
            error: None,
        }
    }

    /// For a request (a NOTIFY).
    pub fn request(key: Arc<TsigKey>, time: u64) -> Signer {
        Signer {
            key,
            prior: None,
            first: true,
            time,
            error: None,
        }
    }

    /// A signed BADTIME answer (RFC 8945 section 5.2.3).
    pub fn bad_time(key: Arc<TsigKey>, request_mac: Vec<u8>, time: u64) -> Signer {
        Signer {
            error: Some(TsigError::BadTime),
            ..Signer::response(key, request_mac, time)
        }
    }

    /// Appends the TSIG record to a complete message (`msg`, whose ID is
    /// the original ID) and counts it in ARCOUNT.
    pub fn sign(&mut self, msg: &mut Vec<u8>) {
        let oid = u16::from_be_bytes([msg[0], msg[1]]);
        let other = match self.error {
            Some(TsigError::BadTime) => {
                let t = now();
                vec![
                    (t >> 40) as u8,
                    (t >> 32) as u8,
                    (t >> 24) as u8,
                    (t >> 16) as u8,
                    (t >> 8) as u8,
                    t as u8,
                ]
            }
            _ => Vec::new(),
        };
        let stub = TSIG::new(
            self.key.algorithm.clone(),
            self.time,
            FUDGE,
            Vec::new(),
            oid,
            self.error,
            other,
        );
        let mut tbs = Vec::with_capacity(msg.len() + 128);
        if let Some(prior) = &self.prior {
            tbs.extend_from_slice(&(prior.len() as u16).to_be_bytes());
            tbs.extend_from_slice(prior);
        }
        tbs.extend_from_slice(msg);
        if self.first {
            // A fresh buffer: an encoder writes from its buffer's start.
            let mut vars = Vec::with_capacity(128);
            let mut enc = BinEncoder::new(&mut vars);
            stub.emit_tsig_for_mac(&mut enc, &self.key.name)
                .expect("writing to a Vec");
            tbs.extend_from_slice(&vars);
        } else {
            tbs.extend_from_slice(&((self.time >> 32) as u16).to_be_bytes());
            tbs.extend_from_slice(&(self.time as u32).to_be_bytes());
            tbs.extend_from_slice(&FUDGE.to_be_bytes());
        }
        let mac = self.key.mac(&tbs);
        append(
            msg,
            make_tsig_record(self.key.name.clone(), stub.set_mac(mac.clone())),
        );
        self.prior = Some(mac);
        self.first = false;
    }
}

/// Appends an unsigned TSIG record carrying `error` (BADKEY, BADSIG).
pub fn append_error(msg: &mut Vec<u8>, inv: &Invalid, time: u64) {
    let oid = u16::from_be_bytes([msg[0], msg[1]]);
    let rdata = TSIG::new(
        inv.algorithm.clone(),
        time,
        FUDGE,
        Vec::new(),
        oid,
        Some(inv.error),
        Vec::new(),
    );
    append(msg, make_tsig_record(inv.key_name.clone(), rdata));
}

fn append(msg: &mut Vec<u8>, record: Record<TSIG>) {
    let mut rr = Vec::with_capacity(128);
    {
        let mut enc = BinEncoder::new(&mut rr);
        record.emit(&mut enc).expect("writing to a Vec");
    }
    msg.extend_from_slice(&rr);
    let ar = u16::from_be_bytes([msg[10], msg[11]]) + 1;
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;

    fn key() -> Arc<TsigKey> {
        Arc::new(
            TsigKey::new(
                "kanki-key",
                "hmac-sha256",
                b"0123456789abcdef0123456789abcdef".to_vec(),
            )
            .unwrap(),
        )
    }

    fn message(id: u16) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.add_query(Query::query(
            Name::from_ascii("rpz.kanki.").unwrap(),
            RecordType::SOA,
        ));
        m.to_vec().unwrap()
    }

    #[test]
    fn requests_signed_here_check_and_responses_verify_with_hickory() {
        let k = key();
        let t = now();
        let mut req = message(7);
        Signer::request(k.clone(), t).sign(&mut req);
        let Checked::Valid { mac, .. } = check(&req, std::slice::from_ref(&k), t) else {
            panic!("own request does not check")
        };
        let mut resp = message(7);
        resp[2] |= 0x80;
        let mut s = Signer::response(k.clone(), mac.clone(), t);
        s.sign(&mut resp);
        let (tbs, rr) = signed_bitmessage_to_buf(&resp, Some(&mac), true).unwrap();
        k.algorithm
            .verify_mac(&k.secret, &tbs, &rr.data.mac)
            .expect("first response MAC");
        // The second message of a transfer covers the first one's MAC.
        let mut second = message(7);
        second[2] |= 0x80;
        s.sign(&mut second);
        let (tbs2, rr2) = signed_bitmessage_to_buf(&second, Some(&rr.data.mac), false).unwrap();
        k.algorithm
            .verify_mac(&k.secret, &tbs2, &rr2.data.mac)
            .expect("second response MAC");

        // Wrong key, bad MAC, bad time.
        let other = Arc::new(TsigKey::new("other", "hmac-sha256", vec![1; 32]).unwrap());
        assert!(matches!(
            check(&req, &[other], t),
            Checked::Invalid(Invalid {
                error: TsigError::BadKey,
                ..
            })
        ));
        let mut bad = req.clone();
        let n = bad.len();
        bad[n - 10] ^= 1;
        assert!(matches!(
            check(&bad, std::slice::from_ref(&k), t),
            Checked::Invalid(_)
        ));
        assert!(matches!(
            check(&req, std::slice::from_ref(&k), t + 3600),
            Checked::Invalid(Invalid {
                error: TsigError::BadTime,
                ..
            })
        ));
        assert!(matches!(check(&message(1), &[k], t), Checked::Unsigned));
    }
}
