//! The indicator model shared by every part of kanki.
//!
//! An *indicator* is a malicious URL, domain or IP address (or CIDR block) with
//! its category, sources, dates, confidence and status. This crate owns the
//! vocabulary ([`Kind`], [`Category`], [`Status`], [`Tlp`]), the normalization
//! of values ([`normalize`]) and the allowlist that always wins ([`allowlist`]).
//! It does no I/O.

pub mod allowlist;
pub mod normalize;
mod record;
mod types;

pub use allowlist::{AllowEntry, AllowKind, AllowMatch, Allowlist};
pub use normalize::{NormalizeError, Normalized, normalize_any, normalize_as};
pub use record::{Evidence, Indicator, IndicatorId, SourceRef};
pub use types::{Category, Kind, ParseEnumError, Status, Tlp};
