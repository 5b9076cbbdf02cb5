//! RADIUS accounting for kanki.
//!
//! Two layers, kept apart like a protocol crate and a server crate:
//!
//! - the protocol: [`Packet`] (RFC 2865 framing, checked strictly),
//!   [`AccountingRequest`] (the attributes of RFC 2865, 2866, 2869, 3162
//!   and 4818 that say who held which address when), the accounting
//!   authenticators (RFC 2866 §3, §4), and [`PacketWriter`] to build
//!   packets;
//! - [`server`]: a UDP accounting server that verifies each request
//!   against its NAS's secret, turns it into a
//!   [`kanki_directory::BindingEvent`], hands the events in batches to an
//!   [`server::AccountingSink`] (group commit) and answers only once the
//!   sink has stored them;
//! - [`load`]: a load generator, for benchmarks.
//!
//! See the crate's README.md for what is dropped and counted.
//!
//! The codec is written by hand rather than taken from a crate: the RADIUS
//! crates on crates.io either bundle their own server and an MD5 other
//! than RustCrypto's (`radius`), are synchronous with a runtime dictionary
//! (`radius-rust`), or only parse (`radius-parser`); none reports *why* a
//! packet is malformed in a form that can be counted, which the accounting
//! server needs. Accounting needs only a small part of RADIUS (no
//! User-Password hiding, no EAP), so the codec stays small.

pub mod attr;
pub mod load;
pub mod packet;
pub mod replay;
pub mod server;

pub use attr::{AccountingRequest, StatusType};
pub use packet::{Attribute, EncodeError, Packet, PacketWriter, accounting_response};

/// Why a datagram is not a usable Accounting-Request. Each variant is its
/// own drop reason in [`server::Counters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 20 octets: not even a header.
    #[error("datagram shorter than the 20-octet header")]
    ShortDatagram,
    /// The Length field says less than 20.
    #[error("length field below 20")]
    LengthBelowHeader,
    /// The Length field says more than 4096.
    #[error("length field above 4096")]
    LengthAboveMax,
    /// The datagram is shorter than its Length field (RFC 2865 §3: dropped).
    #[error("datagram shorter than its length field")]
    Truncated,
    /// One octet left after the last attribute: no room for a header.
    #[error("attribute header cut off by the packet length")]
    AttributeHeader,
    /// An attribute whose length octet says 0 or 1.
    #[error("attribute length below 2")]
    AttributeLength,
    /// An attribute that runs past the packet's Length.
    #[error("attribute runs past the packet length")]
    AttributeOverrun,
    /// A value of the wrong size for its attribute (or an empty string).
    #[error("attribute {0}: value of the wrong size")]
    BadValue(u8),
    /// An IPv6 prefix longer than 128 bits, or with fewer octets than its
    /// length needs.
    #[error("attribute {0}: bad IPv6 prefix")]
    BadPrefix(u8),
    /// A text attribute that is not UTF-8.
    #[error("attribute {0}: text is not UTF-8")]
    InvalidText(u8),
    /// A second copy of an attribute that may appear at most once.
    #[error("attribute {0} appears more than once")]
    Duplicate(u8),
    #[error("no Acct-Status-Type")]
    MissingStatusType,
    /// An Acct-Status-Type other than Start, Stop, Interim-Update,
    /// Accounting-On, Accounting-Off.
    #[error("Acct-Status-Type {0} not handled")]
    UnknownStatusType(u32),
    /// A Start, Interim-Update or Stop without Acct-Session-Id.
    #[error("session record without Acct-Session-Id")]
    MissingSessionId,
    /// A Start, Interim-Update or Stop without a User-Name (nobody to
    /// attribute the address to).
    #[error("session record without User-Name")]
    MissingUserName,
}
