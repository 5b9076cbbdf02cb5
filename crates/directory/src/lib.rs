//! The subscriber directory: who is behind an address, now or at a past
//! moment.
//!
//! - [`types`]: subscribers, consent, the identifiers network records name
//!   them by, and address bindings over time.
//! - [`sources`]: readers of the binding records an ISP has (RADIUS
//!   accounting `detail` files, Kea and dhcpd leases, static assignments,
//!   carrier-grade NAT port blocks), each turning a file into
//!   [`BindingEvent`]s, a malformed line counted with its reason.
//!
//! Every lookup that ties an address to a subscriber is made under a legal
//! ground and is written to the audit log: see the `audit` crate.

pub mod index;
pub mod sources;
pub mod subscribers;
pub mod synth;
pub mod types;

pub use index::{BindingIndex, BindingRef, Candidate, IndexBuilder, holder_now};
pub use subscribers::{SubscriberRecord, SubscriberRow, read_subscribers};
pub use types::*;
