//! The Unbound export: `local-zone:` lines to `include:` inside the
//! `server:` clause of unbound.conf.

use std::io::{self, BufWriter, Write};
use std::net::IpAddr;

use crate::BUFFER_SIZE;
use crate::list::{DnsList, Entry, ExportStats, Reach, for_each_name, skip_ips};
use crate::rpz::{RpzAction, absolute};

/// The `local-zone` type that does in Unbound what `action` does in RPZ:
///
/// | action | local-zone type | answer for the name and every name below it |
/// | --- | --- | --- |
/// | `nxdomain` | `always_nxdomain` | NXDOMAIN |
/// | `nodata` | `always_nodata` | NOERROR, no data |
/// | `passthru` | `always_transparent` | resolved normally |
/// | `drop` | `always_deny` | none (the query is dropped) |
/// | `cname:NAME` | `redirect` + `local-data: "name. CNAME NAME"` | CNAME to the garden, resolved on |
/// | `local:ADDR` | `redirect` + `local-data: "name. A ADDR"` | the address; no data for other types |
///
/// The `always_*` types ignore local data. `always_nxdomain` and
/// `always_transparent` are old (Unbound 1.6); `always_nodata` and
/// `always_deny` can be set from the configuration file since 1.13.1. A
/// `redirect` zone answers every name below it with the apex's data, so
/// Unbound cannot keep the query name the way BIND's `*.garden` CNAME
/// target does: a `cname:*.garden.example.` action points every blocked
/// name at `garden.example.` itself.
pub fn unbound_zone_type(action: &RpzAction) -> &'static str {
    match action {
        RpzAction::Nxdomain => "always_nxdomain",
        RpzAction::Nodata => "always_nodata",
        RpzAction::Passthru => "always_transparent",
        RpzAction::Drop => "always_deny",
        RpzAction::Cname(_) | RpzAction::Local(_) => "redirect",
    }
}

/// Writes Unbound configuration lines, to `include:` from the `server:`
/// clause:
///
/// ```text
/// # kanki blocklist (Unbound local-zone)
/// local-zone: "bad.example." always_nxdomain
/// local-zone: "good.bad.example." always_transparent
/// ```
///
/// A local zone always covers the names below it (whatever
/// [`crate::RpzOptions::wildcards`] says), so names under a listed name
/// are left out, and each exception becomes an `always_transparent` zone
/// nested inside, which Unbound prefers because it is closer to the query
/// name. See [`unbound_zone_type`] for the action. IP triggers have no
/// `local-zone` form (Unbound's RPZ module can load the `rpz` export for
/// them) and are counted as skipped.
pub fn write_unbound<W: Write>(
    w: W,
    list: &DnsList,
    action: &RpzAction,
) -> io::Result<ExportStats> {
    let zone_type = unbound_zone_type(action);
    // The local-data records of a redirect zone, after `"name. `.
    let data: Vec<String> = match action {
        RpzAction::Cname(target) => {
            let t = target.strip_prefix("*.").unwrap_or(target);
            vec![format!("CNAME {}", absolute(t))]
        }
        RpzAction::Local(addrs) => addrs
            .iter()
            .map(|a| match a {
                IpAddr::V4(a) => format!("A {a}"),
                IpAddr::V6(a) => format!("AAAA {a}"),
            })
            .collect(),
        _ => Vec::new(),
    };
    if zone_type == "redirect" && data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the local action needs at least one address",
        ));
    }
    let zone_tail = format!(".\" {zone_type}\n");
    let data_lines: Vec<String> = data.iter().map(|d| format!(". {d}\"\n")).collect();

    let mut w = BufWriter::with_capacity(BUFFER_SIZE, w);
    let mut stats = ExportStats::default();
    w.write_all(b"# kanki blocklist (Unbound local-zone)\n")?;
    for_each_name(
        list,
        Reach::Subtree,
        &mut stats,
        |_, _| None,
        |name, entry| {
            w.write_all(b"local-zone: \"")?;
            w.write_all(name.as_bytes())?;
            if entry == Entry::Exception {
                return w.write_all(b".\" always_transparent\n");
            }
            w.write_all(zone_tail.as_bytes())?;
            for line in &data_lines {
                w.write_all(b"local-data: \"")?;
                w.write_all(name.as_bytes())?;
                w.write_all(line.as_bytes())?;
            }
            Ok(())
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

    fn export(list: &DnsList, action: &str) -> (String, ExportStats) {
        let mut out = Vec::new();
        let stats = write_unbound(&mut out, list, &action.parse().unwrap()).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    #[test]
    fn local_zones_per_action() {
        let list = DnsList::new(
            ["bad.example", "www.bad.example", "x.good.bad.example"],
            ["192.0.2.1"],
        )
        .with_exceptions(["good.bad.example"]);
        let (t, stats) = export(&list, "nxdomain");
        assert_eq!(
            t,
            "# kanki blocklist (Unbound local-zone)\n\
             local-zone: \"bad.example.\" always_nxdomain\n\
             local-zone: \"x.good.bad.example.\" always_nxdomain\n\
             local-zone: \"good.bad.example.\" always_transparent\n"
        );
        assert_eq!((stats.names, stats.covered, stats.exceptions), (2, 1, 1));
        assert_eq!(stats.skipped[&SkipReason::NoIpTriggers], 1);

        let one = DnsList::new(["bad.example"], Vec::<String>::new());
        for (action, expected) in [
            ("nodata", "local-zone: \"bad.example.\" always_nodata\n"),
            (
                "passthru",
                "local-zone: \"bad.example.\" always_transparent\n",
            ),
            ("drop", "local-zone: \"bad.example.\" always_deny\n"),
            (
                "cname:warning.kanki.",
                "local-zone: \"bad.example.\" redirect\n\
                 local-data: \"bad.example. CNAME warning.kanki.\"\n",
            ),
            (
                "cname:*.garden.example.",
                "local-zone: \"bad.example.\" redirect\n\
                 local-data: \"bad.example. CNAME garden.example.\"\n",
            ),
            (
                "local:192.0.2.80,2001:db8::80",
                "local-zone: \"bad.example.\" redirect\n\
                 local-data: \"bad.example. A 192.0.2.80\"\n\
                 local-data: \"bad.example. AAAA 2001:db8::80\"\n",
            ),
        ] {
            let (t, _) = export(&one, action);
            assert_eq!(
                t,
                format!("# kanki blocklist (Unbound local-zone)\n{expected}"),
                "{action}"
            );
        }
        let e = write_unbound(Vec::new(), &one, &RpzAction::Local(vec![])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
