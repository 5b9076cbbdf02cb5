//! The list exports: the enforced list written in the formats that
//! resolvers, proxies, hosts files and analysts read.
//!
//! Two kinds of input:
//!
//! * the **DNS-level list** ([`DnsList`]): names already filtered by the
//!   policy rule, plus IP triggers, for the formats a resolver or proxy
//!   enforces — [`write_rpz`], [`write_hosts`], [`write_plain`],
//!   [`write_squid`], [`write_unbound`];
//! * the **indicator records** ([`Indicator`]), for the formats people and
//!   other tools analyse — [`write_csv`], [`write_json`].
//!
//! | format | names | subdomains of a name | IP triggers | allowlist exceptions |
//! | --- | --- | --- | --- | --- |
//! | `rpz` | QNAME triggers | `*.name` triggers when [`RpzOptions::wildcards`] | `rpz-ip` triggers | `rpz-passthru.` under a wildcarded name |
//! | `hosts` | `ADDRESS name` | no (a hosts file matches exact names) | no | not needed |
//! | `plain` | one a line | no | after the names, one a line | not needed |
//! | `squid` | `.name` (dstdomain) | yes, always | no (use a `dst` ACL) | the covering name is written exactly |
//! | `unbound` | `local-zone:` | yes, always | no (use Unbound's RPZ module with the `rpz` export) | `always_transparent` zone |
//! | `csv`, `json` | every indicator record given, whatever its kind | | | |
//!
//! Every DNS-level writer checks each name before writing it: a name that
//! is not a lowercase host name (labels of `a-z`, `0-9`, `-`, `_`; at least
//! two labels; at most 253 bytes) is left out and counted in
//! [`ExportStats::skipped`] with its reason, never escaped: such a name
//! cannot come out of kanki's normalizer, and a resolver would never be
//! asked for it as a host. Where a format's entry covers the subdomains of
//! a name, names under another listed name are left out (counted in
//! [`ExportStats::covered`]); Squid refuses such overlapping entries, and
//! for the others they are redundant.
//!
//! Writers buffer their output themselves (64 KiB): pass a `File`, a
//! socket or `&mut` anything that implements [`Write`]. They flush before
//! returning.

mod list;
mod records;
mod rpz;
mod text;
mod unbound;

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

pub use kanki_indicators::Indicator;
pub use list::{DnsList, ExportStats, IpTrigger, SkipReason};
pub use records::{CSV_HEADER, write_csv, write_json};
pub use rpz::{
    RpzAction, RpzApex, RpzEntryKind, RpzOptions, RpzRdata, for_each_rpz_entry, rpz_ip_owner,
    write_rpz,
};
pub use text::{DEFAULT_HOSTS_ADDRESS, write_hosts, write_plain, write_squid};
pub use unbound::{unbound_zone_type, write_unbound};

/// Size of the buffer every writer puts in front of its output.
pub(crate) const BUFFER_SIZE: usize = 64 * 1024;

/// One of the export formats, as named on the command line and in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// A complete response policy zone (draft-vixie-dnsop-dns-rpz).
    Rpz,
    /// A hosts file: `0.0.0.0 name` a line.
    Hosts,
    /// One name a line, then one IP address or CIDR block a line.
    Plain,
    /// Every indicator record as CSV with a header row.
    Csv,
    /// Every indicator record as a JSON array.
    Json,
    /// A Squid `dstdomain` ACL file.
    Squid,
    /// Unbound `local-zone:` lines to `include:` in the `server:` clause.
    Unbound,
}

impl ExportFormat {
    /// Every format, in declaration order.
    pub const ALL: &'static [ExportFormat] = &[
        ExportFormat::Rpz,
        ExportFormat::Hosts,
        ExportFormat::Plain,
        ExportFormat::Csv,
        ExportFormat::Json,
        ExportFormat::Squid,
        ExportFormat::Unbound,
    ];

    /// The stable spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Rpz => "rpz",
            ExportFormat::Hosts => "hosts",
            ExportFormat::Plain => "plain",
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Squid => "squid",
            ExportFormat::Unbound => "unbound",
        }
    }

    /// Whether the format is written from indicator records ([`write_csv`],
    /// [`write_json`]) rather than from the DNS-level list ([`write_list`]).
    pub fn uses_records(self) -> bool {
        matches!(self, ExportFormat::Csv | ExportFormat::Json)
    }

    /// The media type to serve the export with over HTTP.
    pub fn media_type(self) -> &'static str {
        match self {
            // RFC 4027.
            ExportFormat::Rpz => "text/dns",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
            ExportFormat::Hosts
            | ExportFormat::Plain
            | ExportFormat::Squid
            | ExportFormat::Unbound => "text/plain; charset=utf-8",
        }
    }

    /// A conventional file name extension, without the dot.
    pub fn file_extension(self) -> &'static str {
        match self {
            ExportFormat::Rpz => "zone",
            ExportFormat::Hosts => "hosts",
            ExportFormat::Plain | ExportFormat::Squid => "txt",
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Unbound => "conf",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExportFormat::ALL
            .iter()
            .copied()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<_> = ExportFormat::ALL.iter().map(|f| f.as_str()).collect();
                format!("unknown export format {s:?} (one of: {})", names.join(", "))
            })
    }
}

impl serde::Serialize for ExportFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ExportFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Settings for the DNS-level formats, for [`write_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    /// The RPZ zone; its [`RpzOptions::action`] is also what the `unbound`
    /// export does with a listed name.
    pub rpz: RpzOptions,
    /// The address the `hosts` export points names at.
    pub hosts_address: String,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            rpz: RpzOptions::default(),
            hosts_address: DEFAULT_HOSTS_ADDRESS.to_string(),
        }
    }
}

/// Writes `list` in one of the DNS-level formats. The record formats
/// ([`ExportFormat::uses_records`]) are refused with
/// [`io::ErrorKind::InvalidInput`]: write them with [`write_csv`] or
/// [`write_json`].
pub fn write_list<W: Write>(
    format: ExportFormat,
    w: W,
    list: &DnsList,
    opts: &ListOptions,
) -> io::Result<ExportStats> {
    match format {
        ExportFormat::Rpz => write_rpz(w, list, &opts.rpz),
        ExportFormat::Hosts => write_hosts(w, list, &opts.hosts_address),
        ExportFormat::Plain => write_plain(w, list),
        ExportFormat::Squid => write_squid(w, list),
        ExportFormat::Unbound => write_unbound(w, list, &opts.rpz.action),
        ExportFormat::Csv | ExportFormat::Json => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the {format} export is written from indicator records, not from the DNS list"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        for f in ExportFormat::ALL {
            assert_eq!(f.as_str().parse::<ExportFormat>().unwrap(), *f);
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!(" RPZ ".parse::<ExportFormat>().unwrap(), ExportFormat::Rpz);
        let e = "bind".parse::<ExportFormat>().unwrap_err();
        assert!(
            e.contains("rpz, hosts, plain, csv, json, squid, unbound"),
            "{e}"
        );
        assert!(ExportFormat::Csv.uses_records() && ExportFormat::Json.uses_records());
        assert!(!ExportFormat::Rpz.uses_records());
        let json = serde_json::to_string(&ExportFormat::Squid).unwrap();
        assert_eq!(json, "\"squid\"");
        assert_eq!(
            serde_json::from_str::<ExportFormat>("\"unbound\"").unwrap(),
            ExportFormat::Unbound
        );
    }

    #[test]
    fn write_list_dispatches_and_refuses_record_formats() {
        let list = DnsList::new(["bad.example"], Vec::<String>::new());
        let opts = ListOptions::default();
        let mut out = Vec::new();
        write_list(ExportFormat::Hosts, &mut out, &list, &opts).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("0.0.0.0 bad.example\n")
        );
        let e = write_list(ExportFormat::Csv, Vec::new(), &list, &opts).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
