//! kanki's DNS part:
//!
//! * [`front`]: the DNS front, answering the ISP's subscribers directly and
//!   warning those who consented before they reach a listed name;
//! * [`rpz`]: the RPZ primary, the list served as response policy zones to
//!   the ISP's own resolvers over AXFR and IXFR, with NOTIFY and TSIG.

pub mod front;
pub mod rpz;
