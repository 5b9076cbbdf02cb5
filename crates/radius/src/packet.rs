//! The RADIUS packet (RFC 2865 §3, §5): header, attributes, and the
//! accounting authenticators (RFC 2866 §3, §4).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Authenticator (16)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attributes: Type (1) | Length (1, incl. these 2) | Value ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use md5::{Digest, Md5};

use crate::DecodeError;
use crate::attr;

/// Octets of the fixed header: code, identifier, length, authenticator.
pub const HEADER_LEN: usize = 20;
/// The largest packet RFC 2865 §3 allows.
pub const MAX_LEN: usize = 4096;
/// The largest attribute value (an attribute's length octet counts its own
/// two header octets).
pub const MAX_VALUE_LEN: usize = 253;

/// Packet codes (RFC 2865 §4, RFC 2866 §4).
pub mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const STATUS_SERVER: u8 = 12;
}

/// A structurally valid packet, borrowed from the datagram it came in.
///
/// [`Packet::parse`] has checked the header's Length against the datagram
/// and every attribute's length against Length, so walking the attributes
/// cannot fail. Whether the authenticator is right is a separate question
/// ([`Packet::verify_accounting_request`]): it needs the NAS's secret.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The packet's octets up to its Length (padding after it removed).
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the header and the attribute framing.
    ///
    /// RFC 2865 §3: octets past Length are padding and are ignored; a
    /// datagram shorter than Length is dropped; Length must lie in
    /// 20..=4096.
    pub fn parse(datagram: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if datagram.len() < HEADER_LEN {
            return Err(DecodeError::ShortDatagram);
        }
        let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if length < HEADER_LEN {
            return Err(DecodeError::LengthBelowHeader);
        }
        if length > MAX_LEN {
            return Err(DecodeError::LengthAboveMax);
        }
        if datagram.len() < length {
            return Err(DecodeError::Truncated);
        }
        let bytes = &datagram[..length];
        let mut rest = &bytes[HEADER_LEN..];
        while !rest.is_empty() {
            if rest.len() < 2 {
                return Err(DecodeError::AttributeHeader);
            }
            let len = usize::from(rest[1]);
            if len < 2 {
                return Err(DecodeError::AttributeLength);
            }
            if len > rest.len() {
                return Err(DecodeError::AttributeOverrun);
            }
            rest = &rest[len..];
        }
        Ok(Packet { bytes })
    }

    pub fn code(&self) -> u8 {
        self.bytes[0]
    }

    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }

    /// The Request (or Response) Authenticator.
    pub fn authenticator(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.bytes[4..HEADER_LEN]);
        a
    }

    /// The packet's octets, Length of them.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The attributes, in order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: &self.bytes[HEADER_LEN..],
        }
    }

    /// RFC 2866 §3: an Accounting-Request's authenticator is
    /// MD5(Code | Identifier | Length | 16 zero octets | Attributes | Secret).
    /// Also true for the Accounting-Response check when given the request's
    /// authenticator: see [`Packet::verify_accounting_response`].
    pub fn verify_accounting_request(&self, secret: &[u8]) -> bool {
        let expected = digest(
            &self.bytes[..4],
            &[0; 16],
            &self.bytes[HEADER_LEN..],
            secret,
        );
        constant_time_eq(&expected, &self.bytes[4..HEADER_LEN])
    }

    /// RFC 2866 §4: an Accounting-Response's authenticator is
    /// MD5(Code | Identifier | Length | Request Authenticator | Attributes | Secret).
    pub fn verify_accounting_response(
        &self,
        request_authenticator: &[u8; 16],
        secret: &[u8],
    ) -> bool {
        let expected = digest(
            &self.bytes[..4],
            request_authenticator,
            &self.bytes[HEADER_LEN..],
            secret,
        );
        constant_time_eq(&expected, &self.bytes[4..HEADER_LEN])
    }
}

/// One attribute: its type and value (the value without the two header
/// octets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

/// The attributes of a [`Packet`], in order.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        // Packet::parse checked the framing; the guards only keep a bug
        // from turning into a panic.
        if self.rest.len() < 2 {
            return None;
        }
        let len = usize::from(self.rest[1]);
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let a = Attribute {
            kind: self.rest[0],
            value: &self.rest[2..len],
        };
        self.rest = &self.rest[len..];
        Some(a)
    }
}

/// An attribute that does not fit in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {0}: a value is at most 253 octets")]
    ValueTooLong(u8),
    #[error("the packet would exceed 4096 octets")]
    PacketTooLong,
}

/// Builds a packet: header, then attributes, then the authenticator.
#[derive(Clone, Debug)]
pub struct PacketWriter {
    buf: Vec<u8>,
}

impl PacketWriter {
    pub fn new(code: u8, identifier: u8) -> PacketWriter {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&[code, identifier, 0, 0]);
        buf.extend_from_slice(&[0; 16]);
        PacketWriter { buf }
    }

    /// Appends an attribute.
    pub fn attribute(&mut self, kind: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(EncodeError::ValueTooLong(kind));
        }
        if self.buf.len() + 2 + value.len() > MAX_LEN {
            return Err(EncodeError::PacketTooLong);
        }
        self.buf.push(kind);
        self.buf.push(2 + value.len() as u8);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    /// Appends an attribute of type Integer or Time (4 octets, network order).
    pub fn u32(&mut self, kind: u8, value: u32) -> Result<&mut Self, EncodeError> {
        self.attribute(kind, &value.to_be_bytes())
    }

    /// Appends an IPv6 prefix attribute (RFC 3162 §2.3 layout: reserved,
    /// prefix length, then only the octets the prefix length needs).
    pub fn ipv6_prefix(&mut self, kind: u8, net: ipnet::Ipv6Net) -> Result<&mut Self, EncodeError> {
        let (value, len) = attr::encode_ipv6_prefix(net);
        self.attribute(kind, &value[..len])
    }

    /// Finishes an Accounting-Request: Length, then the Request
    /// Authenticator (RFC 2866 §3).
    pub fn finish_accounting_request(mut self, secret: &[u8]) -> Vec<u8> {
        self.set_length();
        let auth = digest(&self.buf[..4], &[0; 16], &self.buf[HEADER_LEN..], secret);
        self.buf[4..HEADER_LEN].copy_from_slice(&auth);
        self.buf
    }

    /// Finishes a response: Length, then the Response Authenticator
    /// (RFC 2866 §4).
    pub fn finish_response(mut self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.set_length();
        let auth = digest(
            &self.buf[..4],
            request_authenticator,
            &self.buf[HEADER_LEN..],
            secret,
        );
        self.buf[4..HEADER_LEN].copy_from_slice(&auth);
        self.buf
    }

    fn set_length(&mut self) {
        // `attribute` keeps the buffer within MAX_LEN, so this fits a u16.
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

/// The Accounting-Response to a verified Accounting-Request: no attributes
/// but the request's Proxy-State attributes, copied in order (RFC 2865 §5.33).
pub fn accounting_response(request: &Packet<'_>, secret: &[u8]) -> Vec<u8> {
    let mut w = PacketWriter::new(code::ACCOUNTING_RESPONSE, request.identifier());
    for a in request.attributes() {
        if a.kind == attr::PROXY_STATE {
            // Cannot fail: the request, which held these, fit in a packet.
            let _ = w.attribute(a.kind, a.value);
        }
    }
    w.finish_response(&request.authenticator(), secret)
}

fn digest(head: &[u8], authenticator: &[u8; 16], attributes: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(head);
    h.update(authenticator);
    h.update(attributes);
    h.update(secret);
    h.finalize().into()
}

/// Compares without an early exit, so the time taken says nothing about how
/// many leading octets of a forged authenticator were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(secret: &[u8]) -> Vec<u8> {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 7);
        w.attribute(attr::USER_NAME, b"alice").unwrap();
        w.u32(attr::ACCT_STATUS_TYPE, 1).unwrap();
        w.attribute(attr::ACCT_SESSION_ID, b"s1").unwrap();
        w.finish_accounting_request(secret)
    }

    #[test]
    fn request_round_trip_and_authenticator() {
        let bytes = request(b"testing123");
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.code(), code::ACCOUNTING_REQUEST);
        assert_eq!(p.identifier(), 7);
        assert!(p.verify_accounting_request(b"testing123"));
        assert!(!p.verify_accounting_request(b"testing124"));
        let kinds: Vec<u8> = p.attributes().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                attr::USER_NAME,
                attr::ACCT_STATUS_TYPE,
                attr::ACCT_SESSION_ID
            ]
        );
        // One flipped bit anywhere breaks the authenticator.
        for i in 0..bytes.len() {
            if (2..4).contains(&i) {
                continue; // the length: parse would refuse it first
            }
            let mut b = bytes.clone();
            b[i] ^= 1;
            if let Ok(p) = Packet::parse(&b) {
                assert!(!p.verify_accounting_request(b"testing123"), "octet {i}");
            }
        }
    }

    #[test]
    fn response_carries_proxy_state_and_verifies() {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 9);
        w.attribute(attr::PROXY_STATE, b"ps1").unwrap();
        w.attribute(attr::USER_NAME, b"bob").unwrap();
        w.attribute(attr::PROXY_STATE, b"ps2").unwrap();
        let req = w.finish_accounting_request(b"s");
        let req = Packet::parse(&req).unwrap();
        let resp = accounting_response(&req, b"s");
        let r = Packet::parse(&resp).unwrap();
        assert_eq!(r.code(), code::ACCOUNTING_RESPONSE);
        assert_eq!(r.identifier(), 9);
        assert!(r.verify_accounting_response(&req.authenticator(), b"s"));
        assert!(!r.verify_accounting_response(&[0; 16], b"s"));
        let attrs: Vec<_> = r.attributes().map(|a| (a.kind, a.value.to_vec())).collect();
        assert_eq!(
            attrs,
            [
                (attr::PROXY_STATE, b"ps1".to_vec()),
                (attr::PROXY_STATE, b"ps2".to_vec())
            ]
        );
    }

    #[test]
    fn framing_errors_are_distinct() {
        let good = request(b"x");
        assert_eq!(
            Packet::parse(&good[..19]).unwrap_err(),
            DecodeError::ShortDatagram
        );

        let mut b = good.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::parse(&b).unwrap_err(),
            DecodeError::LengthBelowHeader
        );

        b[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(Packet::parse(&b).unwrap_err(), DecodeError::LengthAboveMax);

        assert_eq!(
            Packet::parse(&good[..good.len() - 1]).unwrap_err(),
            DecodeError::Truncated
        );

        // Padding past Length is ignored.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0xff; 30]);
        let p = Packet::parse(&padded).unwrap();
        assert_eq!(p.as_bytes(), &good[..]);
        assert!(p.verify_accounting_request(b"x"));

        // Length that cuts an attribute's header, an attribute of length
        // 0 or 1, an attribute running past Length.
        let mut b = good.clone();
        let len = (good.len() - 1) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        b.truncate(good.len() - 1);
        // The last attribute (Acct-Session-Id, 4 octets) now overruns.
        assert_eq!(
            Packet::parse(&b).unwrap_err(),
            DecodeError::AttributeOverrun
        );

        let mut b = PacketWriter::new(code::ACCOUNTING_REQUEST, 1).finish_accounting_request(b"x");
        b.push(1);
        b[2..4].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(Packet::parse(&b).unwrap_err(), DecodeError::AttributeHeader);
        b.push(1);
        b[2..4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(Packet::parse(&b).unwrap_err(), DecodeError::AttributeLength);
    }

    #[test]
    fn writer_limits() {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        assert_eq!(
            w.attribute(1, &[0; 254]).unwrap_err(),
            EncodeError::ValueTooLong(1)
        );
        for _ in 0..15 {
            w.attribute(26, &[0; 253]).unwrap();
        }
        assert_eq!(
            w.attribute(26, &[0; 253]).unwrap_err(),
            EncodeError::PacketTooLong
        );
        let b = w.finish_accounting_request(b"x");
        assert!(b.len() <= MAX_LEN);
        assert!(Packet::parse(&b).unwrap().verify_accounting_request(b"x"));
    }
}
