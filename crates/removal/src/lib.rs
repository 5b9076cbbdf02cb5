//! The removal loop (駆除): events attributed to subscribers become cases
//! per (subscriber, threat); cases get notices, escalate when notices go
//! unacknowledged, and are resolved when re-observation finds them quiet.
//! See `docs/operator-guide.md` ("Removal").

pub mod bounce;
pub mod case;
pub mod escalation;
pub mod ingest;
pub mod notice;
pub mod outcomes;
pub mod site;
