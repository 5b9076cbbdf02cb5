//! ISC Kea lease files (the `memfile` lease database: CSV, v4 and v6).
//!
//! Kea writes a header line, then appends a line each time a lease is
//! allocated, renewed, reclaimed or deleted; the lease file cleanup (LFC)
//! later compacts the file. Columns are found by name, so every Kea
//! version's layout is read:
//!
//! ```text
//! v4: address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id
//! v6: address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id
//! ```
//!
//! - A header with a `duid` column is a v6 file, else v4. Required:
//!   `address`, `valid_lifetime`, `expire`, and `duid` (v6) or one of
//!   `client_id` / `hwaddr` (v4). A line whose first field is `address` is
//!   a header again (concatenated files).
//! - Each line is one interval: held from `expire - valid_lifetime` (the
//!   client's last transmission) to `expire`, Unix seconds. A renewal is a
//!   new line, so a new interval; the key is `prefix@expire`. A
//!   `valid_lifetime` of 4294967295 is Kea's infinite lifetime: `to` is
//!   `None`.
//! - Subject: v4 `client_id` (a [`SubjectKind::ClientId`]) when present,
//!   else `hwaddr` ([`SubjectKind::HwAddr`]): the identifier Kea itself
//!   keyed the lease on. v6: the `duid` (a `ClientId`).
//! - v6 `lease_type` 0 (IA_NA) and 1 (IA_TA) hold the /128 address; 2
//!   (IA_PD) holds `address/prefix_len`.
//! - `state` 0 (default) and 2 (expired-reclaimed: the same interval,
//!   written again when Kea reclaimed it) become bindings. `state` 1
//!   (declined: the address was found in use by someone else) is skipped
//!   ("declined lease"); any other state is skipped ("unknown lease
//!   state").
//! - A line with `valid_lifetime` 0 is Kea recording that it deleted the
//!   lease (a release, a reclaim, an operator command). Its `expire` is
//!   the last renewal time, not the deletion time, so it cannot end the
//!   earlier interval; it is skipped ("deleted lease").
//! - Kea escapes commas in `hostname` and `user_context` as `&#x2c`, so a
//!   line is split on every comma; quotes are ordinary characters.
//!
//! [`SubjectKind::ClientId`]: crate::types::SubjectKind::ClientId
//! [`SubjectKind::HwAddr`]: crate::types::SubjectKind::HwAddr

use std::io::{self, BufRead};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::sources::fields::{Fields, Header};
use crate::sources::{HeaderState, Key, TextLines, client_id, hw_addr, row_of, skip, time};
use crate::types::{Binding, BindingOrigin, BindingRow};

/// Kea's infinite valid lifetime.
const INFINITE: u32 = u32::MAX;

/// The rows of a Kea lease file.
pub struct KeaRows<R> {
    lines: TextLines<R>,
    fields: Fields,
    header: HeaderState<Cols>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

struct Cols {
    family: Family,
    address: usize,
    valid: usize,
    expire: usize,
    client_id: Option<usize>,
    hwaddr: Option<usize>,
    duid: Option<usize>,
    lease_type: Option<usize>,
    prefix_len: Option<usize>,
    state: Option<usize>,
}

impl Cols {
    fn find(h: &Header) -> Result<Cols, &'static str> {
        let duid = h.index("duid");
        let family = if duid.is_some() {
            Family::V6
        } else {
            Family::V4
        };
        let cols = Cols {
            family,
            address: h.index("address").ok_or("missing column address")?,
            valid: h
                .index("valid_lifetime")
                .ok_or("missing column valid_lifetime")?,
            expire: h.index("expire").ok_or("missing column expire")?,
            client_id: h.index("client_id"),
            hwaddr: h.index("hwaddr"),
            duid,
            lease_type: h.index("lease_type"),
            prefix_len: h.index("prefix_len"),
            state: h.index("state"),
        };
        if family == Family::V4 && cols.client_id.is_none() && cols.hwaddr.is_none() {
            return Err("missing column client_id");
        }
        Ok(cols)
    }
}

impl<R: BufRead> KeaRows<R> {
    pub fn new(input: R) -> Self {
        KeaRows {
            lines: TextLines::new(input),
            fields: Fields::default(),
            header: HeaderState::Missing,
        }
    }

    fn next_row(&mut self) -> io::Result<Option<BindingRow>> {
        loop {
            let no = match self.lines.next_content()? {
                None => return Ok(None),
                Some(Err(skipped)) => return Ok(Some(skipped)),
                Some(Ok(no)) => no,
            };
            let line = self.lines.text();
            self.fields
                .split(line, false)
                .expect("splitting without quoting cannot fail");
            let is_header = self
                .fields
                .get(line, 0)
                .is_some_and(|v| v.eq_ignore_ascii_case("address"));
            if is_header || matches!(self.header, HeaderState::Missing) {
                match Cols::find(&Header::new(&self.fields, line)) {
                    Ok(cols) => {
                        self.header = HeaderState::Ready(cols);
                        continue;
                    }
                    Err(reason) => {
                        self.header = HeaderState::Bad;
                        return Ok(Some(skip(no, reason)));
                    }
                }
            }
            let HeaderState::Ready(cols) = &self.header else {
                return Ok(Some(skip(no, "no header")));
            };
            return Ok(Some(row_of(no, lease(cols, &self.fields, line))));
        }
    }
}

fn number<T: std::str::FromStr>(
    v: Option<&str>,
    missing: &'static str,
    bad: &'static str,
) -> Result<T, &'static str> {
    v.ok_or(missing)?.parse().map_err(|_| bad)
}

fn lease(c: &Cols, f: &Fields, line: &str) -> Result<Binding, &'static str> {
    let address: IpAddr = f
        .get(line, c.address)
        .ok_or("missing address")?
        .parse()
        .map_err(|_| "bad address")?;
    if address.is_ipv4() != (c.family == Family::V4) {
        return Err("bad address");
    }
    let valid: u32 = number(
        f.get(line, c.valid),
        "missing valid_lifetime",
        "bad valid_lifetime",
    )?;
    let expire: u64 = number(f.get(line, c.expire), "missing expire", "bad expire")?;
    let state: u32 = match f.opt(line, c.state) {
        None => 0,
        Some(v) => v.parse().map_err(|_| "bad state")?,
    };
    match state {
        0 | 2 => {}
        1 => return Err("declined lease"),
        _ => return Err("unknown lease state"),
    }
    if valid == 0 {
        return Err("deleted lease");
    }
    let start = expire.checked_sub(u64::from(valid)).ok_or("bad expire")?;
    let from = i64::try_from(start)
        .ok()
        .and_then(time::unix)
        .ok_or("bad expire")?;
    let to = if valid == INFINITE {
        None
    } else {
        Some(
            i64::try_from(expire)
                .ok()
                .and_then(time::unix)
                .ok_or("bad expire")?,
        )
    };
    let (subject, prefix) = match c.family {
        Family::V4 => {
            let subject = if let Some(id) = f.opt(line, c.client_id) {
                client_id(id).ok_or("bad client_id")?
            } else if let Some(hw) = f.opt(line, c.hwaddr) {
                hw_addr(hw).ok_or("bad hwaddr")?
            } else {
                return Err("missing client id");
            };
            (subject, IpNet::from(address))
        }
        Family::V6 => {
            let duid = f.opt(line, c.duid).ok_or("missing duid")?;
            let subject = client_id(duid).ok_or("bad duid")?;
            let lease_type: u8 = match f.opt(line, c.lease_type) {
                None => 0,
                Some(v) => v.parse().map_err(|_| "bad lease_type")?,
            };
            let prefix = match lease_type {
                0 | 1 => IpNet::from(address),
                2 => {
                    let len: u8 = number(
                        f.opt(line, c.prefix_len),
                        "missing prefix_len",
                        "bad prefix_len",
                    )?;
                    let net = IpNet::new(address, len).map_err(|_| "bad prefix_len")?;
                    if net.trunc() != net {
                        return Err("host bits set");
                    }
                    net
                }
                _ => return Err("bad lease_type"),
            };
            (subject, prefix)
        }
    };
    Ok(Binding {
        key: Key::new()
            .net(prefix)
            .ch('@')
            .int(i64::try_from(expire).unwrap_or(i64::MAX))
            .finish(),
        subject,
        prefix,
        ports: None,
        from,
        to,
        origin: BindingOrigin::Kea,
        reporter: None,
    })
}

impl<R: BufRead> Iterator for KeaRows<R> {
    type Item = io::Result<BindingRow>;

    fn next(&mut self) -> Option<io::Result<BindingRow>> {
        self.next_row().transpose()
    }
}
