//! The attributes an accounting server reads, and the typed view of an
//! Accounting-Request.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::DecodeError;
use crate::packet::Packet;

// RFC 2865 §5
pub const USER_NAME: u8 = 1;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const FRAMED_IP_ADDRESS: u8 = 8;
pub const CLASS: u8 = 25;
pub const VENDOR_SPECIFIC: u8 = 26;
pub const NAS_IDENTIFIER: u8 = 32;
pub const PROXY_STATE: u8 = 33;
// RFC 2866 §5
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const ACCT_DELAY_TIME: u8 = 41;
pub const ACCT_SESSION_ID: u8 = 44;
pub const ACCT_SESSION_TIME: u8 = 46;
// RFC 2869 §5
pub const EVENT_TIMESTAMP: u8 = 55;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
// RFC 3162 §2
pub const NAS_IPV6_ADDRESS: u8 = 95;
pub const FRAMED_IPV6_PREFIX: u8 = 97;
// RFC 4818
pub const DELEGATED_IPV6_PREFIX: u8 = 123;

/// Acct-Status-Type (RFC 2866 §5.1, RFC 2869 §5.1 for Interim-Update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusType {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
}

impl StatusType {
    pub fn from_u32(v: u32) -> Option<StatusType> {
        Some(match v {
            1 => StatusType::Start,
            2 => StatusType::Stop,
            3 => StatusType::InterimUpdate,
            7 => StatusType::AccountingOn,
            8 => StatusType::AccountingOff,
            _ => return None,
        })
    }

    pub fn as_u32(self) -> u32 {
        match self {
            StatusType::Start => 1,
            StatusType::Stop => 2,
            StatusType::InterimUpdate => 3,
            StatusType::AccountingOn => 7,
            StatusType::AccountingOff => 8,
        }
    }
}

/// What an Accounting-Request says, attribute by attribute. Text values
/// are checked to be UTF-8 (they become keys and names downstream); the
/// attributes this server does not interpret are kept raw in `other`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountingRequest<'a> {
    /// Acct-Status-Type; `None` only in a `Default` value, never after
    /// [`AccountingRequest::decode`].
    pub status: Option<StatusType>,
    pub user_name: Option<&'a str>,
    pub nas_ip: Option<Ipv4Addr>,
    pub nas_ipv6: Option<Ipv6Addr>,
    pub nas_identifier: Option<&'a str>,
    pub framed_ip: Option<Ipv4Addr>,
    /// Framed-IPv6-Prefix, each (RFC 3162 allows several).
    pub framed_ipv6_prefixes: Vec<Ipv6Net>,
    /// Delegated-IPv6-Prefix, each (RFC 4818 allows several).
    pub delegated_ipv6_prefixes: Vec<Ipv6Net>,
    /// Class, each, raw (RFC 2865 §5.25 allows several).
    pub classes: Vec<&'a [u8]>,
    pub session_id: Option<&'a str>,
    /// Acct-Session-Time, seconds.
    pub session_time: Option<u32>,
    /// Event-Timestamp, seconds since 1970-01-01 UTC.
    pub event_timestamp: Option<u32>,
    /// Acct-Delay-Time, seconds the NAS has been trying to send this.
    pub delay_time: Option<u32>,
    /// Acct-Interim-Interval, seconds.
    pub interim_interval: Option<u32>,
    /// Every other attribute (Proxy-State, Vendor-Specific, ...), in order.
    pub other: Vec<(u8, &'a [u8])>,
}

impl<'a> AccountingRequest<'a> {
    /// Reads the attributes of an Accounting-Request (the caller has
    /// checked the code and the authenticator).
    ///
    /// Strict: a value of the wrong size, an IPv6 prefix longer than 128
    /// bits, an empty or non-UTF-8 text, a second copy of an attribute that
    /// may appear once, an unknown or missing Acct-Status-Type are errors,
    /// each its own variant. An IPv6 prefix's bits past its length are
    /// cleared rather than refused (RFC 8044 §3.10 wants them zero; some
    /// NASes send the whole address).
    pub fn decode(packet: &Packet<'a>) -> Result<AccountingRequest<'a>, DecodeError> {
        let mut r = AccountingRequest::default();
        for a in packet.attributes() {
            let (k, v) = (a.kind, a.value);
            match k {
                USER_NAME => once(k, &mut r.user_name, text(k, v)?)?,
                NAS_IP_ADDRESS => once(k, &mut r.nas_ip, Ipv4Addr::from(fixed::<4>(k, v)?))?,
                NAS_IPV6_ADDRESS => once(k, &mut r.nas_ipv6, Ipv6Addr::from(fixed::<16>(k, v)?))?,
                NAS_IDENTIFIER => once(k, &mut r.nas_identifier, text(k, v)?)?,
                FRAMED_IP_ADDRESS => once(k, &mut r.framed_ip, Ipv4Addr::from(fixed::<4>(k, v)?))?,
                FRAMED_IPV6_PREFIX => r.framed_ipv6_prefixes.push(decode_ipv6_prefix(k, v)?),
                DELEGATED_IPV6_PREFIX => r.delegated_ipv6_prefixes.push(decode_ipv6_prefix(k, v)?),
                CLASS => {
                    if v.is_empty() {
                        return Err(DecodeError::BadValue(k));
                    }
                    r.classes.push(v)
                }
                ACCT_STATUS_TYPE => {
                    let n = u32::from_be_bytes(fixed::<4>(k, v)?);
                    let s = StatusType::from_u32(n).ok_or(DecodeError::UnknownStatusType(n))?;
                    once(k, &mut r.status, s)?
                }
                ACCT_SESSION_ID => once(k, &mut r.session_id, text(k, v)?)?,
                ACCT_SESSION_TIME => once(k, &mut r.session_time, int(k, v)?)?,
                EVENT_TIMESTAMP => once(k, &mut r.event_timestamp, int(k, v)?)?,
                ACCT_DELAY_TIME => once(k, &mut r.delay_time, int(k, v)?)?,
                ACCT_INTERIM_INTERVAL => once(k, &mut r.interim_interval, int(k, v)?)?,
                _ => r.other.push((k, v)),
            }
        }
        if r.status.is_none() {
            return Err(DecodeError::MissingStatusType);
        }
        Ok(r)
    }
}

fn once<T>(kind: u8, slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Duplicate(kind));
    }
    *slot = Some(value);
    Ok(())
}

fn fixed<const N: usize>(kind: u8, v: &[u8]) -> Result<[u8; N], DecodeError> {
    v.try_into().map_err(|_| DecodeError::BadValue(kind))
}

fn int(kind: u8, v: &[u8]) -> Result<u32, DecodeError> {
    fixed::<4>(kind, v).map(u32::from_be_bytes)
}

/// RFC 2865 §5: a text or string attribute has at least one octet.
fn text(kind: u8, v: &[u8]) -> Result<&str, DecodeError> {
    if v.is_empty() {
        return Err(DecodeError::BadValue(kind));
    }
    std::str::from_utf8(v).map_err(|_| DecodeError::InvalidText(kind))
}

/// RFC 3162 §2.3 (and RFC 4818 for Delegated-IPv6-Prefix): Reserved (1),
/// Prefix-Length (1, 0..=128), then at least the octets the prefix length
/// needs, at most 16.
fn decode_ipv6_prefix(kind: u8, v: &[u8]) -> Result<Ipv6Net, DecodeError> {
    if v.len() < 2 || v.len() > 18 {
        return Err(DecodeError::BadValue(kind));
    }
    let plen = v[1];
    if plen > 128 {
        return Err(DecodeError::BadPrefix(kind));
    }
    let given = &v[2..];
    if given.len() < usize::from(plen).div_ceil(8) {
        return Err(DecodeError::BadPrefix(kind));
    }
    let mut octets = [0u8; 16];
    octets[..given.len()].copy_from_slice(given);
    let net =
        Ipv6Net::new(Ipv6Addr::from(octets), plen).map_err(|_| DecodeError::BadPrefix(kind))?;
    Ok(net.trunc())
}

/// The value of an IPv6 prefix attribute, and how many of its octets to
/// send: only those the prefix length needs (as RFC 3162 §2.3 allows).
pub(crate) fn encode_ipv6_prefix(net: Ipv6Net) -> ([u8; 18], usize) {
    let net = net.trunc();
    let mut v = [0u8; 18];
    v[1] = net.prefix_len();
    v[2..].copy_from_slice(&net.addr().octets());
    (v, 2 + usize::from(net.prefix_len()).div_ceil(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PacketWriter, code};

    fn decode_with(build: impl FnOnce(&mut PacketWriter)) -> Result<(), DecodeError> {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        build(&mut w);
        let b = w.finish_accounting_request(b"s");
        let p = Packet::parse(&b).unwrap();
        AccountingRequest::decode(&p).map(|_| ())
    }

    #[test]
    fn reads_every_attribute() {
        let mut w = PacketWriter::new(code::ACCOUNTING_REQUEST, 1);
        w.attribute(USER_NAME, b"alice@isp").unwrap();
        w.u32(ACCT_STATUS_TYPE, 3).unwrap();
        w.attribute(NAS_IP_ADDRESS, &[192, 0, 2, 1]).unwrap();
        w.attribute(NAS_IPV6_ADDRESS, &Ipv6Addr::LOCALHOST.octets())
            .unwrap();
        w.attribute(NAS_IDENTIFIER, b"bras-1").unwrap();
        w.attribute(FRAMED_IP_ADDRESS, &[198, 51, 100, 7]).unwrap();
        w.ipv6_prefix(FRAMED_IPV6_PREFIX, "2001:db8:1:2::/64".parse().unwrap())
            .unwrap();
        // A NAS that sends all 16 octets, with host bits set.
        let mut full = vec![0, 56];
        full.extend_from_slice(&"2001:db8:ff00:11::1".parse::<Ipv6Addr>().unwrap().octets());
        w.attribute(DELEGATED_IPV6_PREFIX, &full).unwrap();
        w.attribute(CLASS, &[0xde, 0xad]).unwrap();
        w.attribute(CLASS, b"x").unwrap();
        w.attribute(ACCT_SESSION_ID, b"00000001").unwrap();
        w.u32(ACCT_SESSION_TIME, 600).unwrap();
        w.u32(EVENT_TIMESTAMP, 1_700_000_000).unwrap();
        w.u32(ACCT_DELAY_TIME, 5).unwrap();
        w.u32(ACCT_INTERIM_INTERVAL, 300).unwrap();
        w.attribute(PROXY_STATE, b"p").unwrap();
        let b = w.finish_accounting_request(b"s");
        let p = Packet::parse(&b).unwrap();
        let r = AccountingRequest::decode(&p).unwrap();
        assert_eq!(r.status, Some(StatusType::InterimUpdate));
        assert_eq!(r.user_name, Some("alice@isp"));
        assert_eq!(r.nas_ip, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(r.nas_ipv6, Some(Ipv6Addr::LOCALHOST));
        assert_eq!(r.nas_identifier, Some("bras-1"));
        assert_eq!(r.framed_ip, Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(
            r.framed_ipv6_prefixes,
            ["2001:db8:1:2::/64".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(
            r.delegated_ipv6_prefixes,
            ["2001:db8:ff00::/56".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(r.classes, [&[0xde, 0xad][..], b"x"]);
        assert_eq!(r.session_id, Some("00000001"));
        assert_eq!(r.session_time, Some(600));
        assert_eq!(r.event_timestamp, Some(1_700_000_000));
        assert_eq!(r.delay_time, Some(5));
        assert_eq!(r.interim_interval, Some(300));
        assert_eq!(r.other, [(PROXY_STATE, &b"p"[..])]);
    }

    #[test]
    fn prefix_encoding_round_trips() {
        for s in [
            "::/0",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "2001:db8::1/128",
            "2001:db8::/57",
        ] {
            let net: Ipv6Net = s.parse().unwrap();
            let (v, n) = encode_ipv6_prefix(net);
            assert_eq!(decode_ipv6_prefix(97, &v[..n]).unwrap(), net, "{s}");
        }
    }

    #[test]
    fn value_errors_are_distinct() {
        let e = |f: &dyn Fn(&mut PacketWriter)| decode_with(|w| f(w)).unwrap_err();
        assert_eq!(e(&|_| {}), DecodeError::MissingStatusType);
        assert_eq!(
            e(&|w| {
                w.u32(ACCT_STATUS_TYPE, 15).unwrap();
            }),
            DecodeError::UnknownStatusType(15)
        );
        assert_eq!(
            e(&|w| {
                w.attribute(ACCT_STATUS_TYPE, &[0, 1]).unwrap();
            }),
            DecodeError::BadValue(ACCT_STATUS_TYPE)
        );
        assert_eq!(
            e(&|w| {
                w.u32(ACCT_STATUS_TYPE, 1).unwrap();
                w.u32(ACCT_STATUS_TYPE, 2).unwrap();
            }),
            DecodeError::Duplicate(ACCT_STATUS_TYPE)
        );
        assert_eq!(
            e(&|w| {
                w.attribute(USER_NAME, &[0xff, 0xfe]).unwrap();
            }),
            DecodeError::InvalidText(USER_NAME)
        );
        assert_eq!(
            e(&|w| {
                w.attribute(USER_NAME, b"").unwrap();
            }),
            DecodeError::BadValue(USER_NAME)
        );
        assert_eq!(
            e(&|w| {
                w.attribute(FRAMED_IP_ADDRESS, &[1, 2, 3]).unwrap();
            }),
            DecodeError::BadValue(FRAMED_IP_ADDRESS)
        );
        assert_eq!(
            e(&|w| {
                w.attribute(FRAMED_IPV6_PREFIX, &[0, 129, 0x20, 0x01])
                    .unwrap();
            }),
            DecodeError::BadPrefix(FRAMED_IPV6_PREFIX)
        );
        assert_eq!(
            e(&|w| {
                // A /64 needs 8 octets; 4 given.
                w.attribute(DELEGATED_IPV6_PREFIX, &[0, 64, 0x20, 0x01, 0x0d, 0xb8])
                    .unwrap();
            }),
            DecodeError::BadPrefix(DELEGATED_IPV6_PREFIX)
        );
        assert_eq!(
            e(&|w| {
                w.attribute(DELEGATED_IPV6_PREFIX, &[0; 19]).unwrap();
            }),
            DecodeError::BadValue(DELEGATED_IPV6_PREFIX)
        );
    }
}
