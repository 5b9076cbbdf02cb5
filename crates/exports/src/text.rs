//! The line-per-name formats: hosts file, plain list, Squid ACL.

use std::io::{self, BufWriter, Write};
use std::net::IpAddr;

use crate::BUFFER_SIZE;
use crate::list::{DnsList, Entry, ExportStats, Reach, for_each_ip, for_each_name, skip_ips};

/// The address a hosts export points names at unless told otherwise: a
/// connection to it fails at once on every common system.
pub const DEFAULT_HOSTS_ADDRESS: &str = "0.0.0.0";

/// Writes a hosts file, `ADDRESS name` a line:
///
/// ```text
/// # kanki blocklist (hosts file)
/// 0.0.0.0 bad.example
/// 0.0.0.0 www.bad.example
/// ```
///
/// A hosts file matches exact names only, so every name is written, also
/// those under another listed name. IP triggers have no place in it and
/// are counted as skipped. An `address` that is not an IP address fails
/// with [`io::ErrorKind::InvalidInput`].
pub fn write_hosts<W: Write>(w: W, list: &DnsList, address: &str) -> io::Result<ExportStats> {
    let address: IpAddr = address.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("hosts address {address:?} is not an IP address"),
        )
    })?;
    let prefix = format!("{address} ");
    let mut w = BufWriter::with_capacity(BUFFER_SIZE, w);
    let mut stats = ExportStats::default();
    w.write_all(b"# kanki blocklist (hosts file)\n")?;
    for_each_name(
        list,
        Reach::Exact,
        &mut stats,
        |_, _| None,
        |name, _| {
            w.write_all(prefix.as_bytes())?;
            w.write_all(name.as_bytes())?;
            w.write_all(b"\n")
        },
    )?;
    skip_ips(list, &mut stats);
    w.flush()?;
    Ok(stats)
}

/// Writes one name a line, then one IP address or CIDR block a line
/// (`192.0.2.1`, `198.51.100.0/24`), with nothing else: no comment, no
/// header, for the tools that take a bare list. Every name is written,
/// also those under another listed name.
pub fn write_plain<W: Write>(w: W, list: &DnsList) -> io::Result<ExportStats> {
    let mut w = BufWriter::with_capacity(BUFFER_SIZE, w);
    let mut stats = ExportStats::default();
    for_each_name(
        list,
        Reach::Exact,
        &mut stats,
        |_, _| None,
        |name, _| {
            w.write_all(name.as_bytes())?;
            w.write_all(b"\n")
        },
    )?;
    for_each_ip(list, &mut stats, |t| writeln!(w, "{t}"))?;
    w.flush()?;
    Ok(stats)
}

/// Writes a Squid `dstdomain` ACL file, for
/// `acl kanki_blocked dstdomain "/path/to/file"` and
/// `http_access deny kanki_blocked`:
///
/// ```text
/// # kanki blocklist (Squid dstdomain ACL)
/// .bad.example
/// ```
///
/// `.bad.example` matches the domain and all its subdomains, so a name
/// under another listed name is left out (Squid refuses such overlapping
/// entries). Squid cannot carve an exception out of a `.name` entry: a
/// listed name with an allowlisted name below it is written without the
/// dot, for itself only, so the allowlist still wins. IP triggers belong
/// in a `dst` ACL and are counted as skipped.
pub fn write_squid<W: Write>(w: W, list: &DnsList) -> io::Result<ExportStats> {
    let mut w = BufWriter::with_capacity(BUFFER_SIZE, w);
    let mut stats = ExportStats::default();
    w.write_all(b"# kanki blocklist (Squid dstdomain ACL)\n")?;
    for_each_name(
        list,
        Reach::SubtreeNoExceptions,
        &mut stats,
        |_, _| None,
        |name, entry| {
            if entry == (Entry::Name { subtree: true }) {
                w.write_all(b".")?;
            }
            w.write_all(name.as_bytes())?;
            w.write_all(b"\n")
        },
    )?;
    skip_ips(list, &mut stats);
    w.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SkipReason;

    fn sample() -> DnsList {
        DnsList::new(
            ["www.bad.example", "bad.example", "evil.test", "BAD NAME"],
            ["2001:db8::1", "192.0.2.0/24", "192.0.2.7/32"],
        )
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<ExportStats>) -> (String, ExportStats) {
        let mut out = Vec::new();
        let stats = f(&mut out).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    #[test]
    fn hosts() {
        let (t, stats) = text(|w| write_hosts(w, &sample(), "0.0.0.0"));
        assert_eq!(
            t,
            "# kanki blocklist (hosts file)\n\
             0.0.0.0 bad.example\n\
             0.0.0.0 evil.test\n\
             0.0.0.0 www.bad.example\n"
        );
        assert_eq!(stats.names, 3);
        assert_eq!(stats.skipped[&SkipReason::InvalidName], 1);
        assert_eq!(stats.skipped[&SkipReason::NoIpTriggers], 3);

        let (t, _) = text(|w| write_hosts(w, &DnsList::new(["a.example"], [""; 0]), " ::1 "));
        assert_eq!(t, "# kanki blocklist (hosts file)\n::1 a.example\n");
        let e = write_hosts(Vec::new(), &sample(), "warning.kanki").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn plain() {
        let (t, stats) = text(|w| write_plain(w, &sample()));
        assert_eq!(
            t,
            "bad.example\n\
             evil.test\n\
             www.bad.example\n\
             192.0.2.0/24\n\
             192.0.2.7\n\
             2001:db8::1\n"
        );
        assert_eq!((stats.names, stats.ips), (3, 3));
    }

    #[test]
    fn squid() {
        let (t, stats) = text(|w| write_squid(w, &sample()));
        assert_eq!(
            t,
            "# kanki blocklist (Squid dstdomain ACL)\n\
             .bad.example\n\
             .evil.test\n"
        );
        assert_eq!((stats.names, stats.covered), (2, 1));

        let list = sample().with_exceptions(["good.bad.example"]);
        let (t, stats) = text(|w| write_squid(w, &list));
        assert_eq!(
            t,
            "# kanki blocklist (Squid dstdomain ACL)\n\
             bad.example\n\
             .evil.test\n\
             .www.bad.example\n"
        );
        assert_eq!((stats.names, stats.covered), (3, 0));
    }
}
