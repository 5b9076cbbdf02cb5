//! kanki's DNS part. For now the RPZ primary ([`rpz`]): the list served
//! as response policy zones to the ISP's own resolvers over AXFR and IXFR,
//! with NOTIFY and TSIG. The DNS front (answering consenting subscribers
//! directly) will live here too.

pub mod rpz;
