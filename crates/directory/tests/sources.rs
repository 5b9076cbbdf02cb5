//! The binding-source readers against the sample files of
//! `examples/bindings/`, and against what goes wrong in real files: CRLF
//! line ends, empty files, broken lines, inputs that break off.

use std::io::{self, BufReader, Read};

use chrono::{DateTime, Utc};
use kanki_directory::sources;
use kanki_directory::{
    Binding, BindingEvent, BindingOrigin, BindingRow, PortRange, SessionPhase, Skipped, SubjectKind,
};

fn sample(name: &str) -> String {
    let path = format!(
        "{}/../../examples/bindings/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rows(origin: BindingOrigin, input: &str) -> Vec<BindingRow> {
    sources::read(origin, input.as_bytes())
        .collect::<io::Result<Vec<_>>>()
        .expect("no I/O error")
}

fn bindings(rows: &[BindingRow]) -> Vec<(u64, &Binding)> {
    rows.iter()
        .filter_map(|r| match r {
            BindingRow::Event {
                line,
                event: BindingEvent::Binding(b),
            } => Some((*line, b)),
            _ => None,
        })
        .collect()
}

fn skips(rows: &[BindingRow]) -> Vec<(u64, &str)> {
    rows.iter()
        .filter_map(|r| match r {
            BindingRow::Skip(Skipped { line, reason }) => Some((*line, reason.as_str())),
            _ => None,
        })
        .collect()
}

/// The 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in sample")) as u64
        + 1
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

/// Line numbers are 1-based and never go backwards.
fn assert_ordered(rows: &[BindingRow]) {
    let mut last = 0;
    for r in rows {
        let line = match r {
            BindingRow::Event { line, .. } => *line,
            BindingRow::Skip(s) => s.line,
        };
        assert!(line >= 1 && line >= last, "line {line} after {last}");
        last = line;
    }
}

#[test]
fn static_assignments() {
    let text = sample("static.csv");
    let rows = rows(BindingOrigin::Static, &text);
    assert_ordered(&rows);
    let b = bindings(&rows);
    assert_eq!(b.len(), 4);

    let (line, first) = b[0];
    assert_eq!(line, line_of(&text, "S-000101"));
    assert_eq!(first.subject.kind, SubjectKind::Subscriber);
    assert_eq!(first.subject.value, "S-000101");
    assert_eq!(first.prefix.to_string(), "198.51.100.17/32");
    assert_eq!(first.from, t("2024-04-01T00:00:00Z"));
    assert_eq!(first.to, None);
    assert_eq!(first.origin, BindingOrigin::Static);
    assert_eq!(first.key, "S-000101|198.51.100.17/32@1711929600");

    assert_eq!(b[1].1.prefix.to_string(), "198.51.100.32/29");
    assert_eq!(b[1].1.to, Some(t("2026-03-31T15:00:00Z")));
    assert_eq!(b[2].1.prefix.to_string(), "2001:db8:4400::/48");
    assert_eq!(b[2].1.from, t("2024-04-01T00:00:00Z"));
    // Quoted fields, an empty quoted `to`.
    assert_eq!(b[3].1.subject.value, "S-000104");
    assert_eq!(b[3].1.to, None);

    assert_eq!(
        skips(&rows),
        vec![
            (line_of(&text, "S-000105"), "host bits set"),
            (line_of(&text, "no subscriber"), "missing subscriber"),
            (line_of(&text, "S-000107"), "bad prefix"),
            (line_of(&text, "S-000108"), "bad from"),
            (line_of(&text, "S-000109"), "to before from"),
        ]
    );
    // CRLF line ends read the same.
    assert_eq!(rows, self::rows(BindingOrigin::Static, &crlf(&text)));
}

#[test]
fn static_header_by_name_and_bad_headers() {
    let rows = rows(
        BindingOrigin::Static,
        "TO,From,Prefix,Subscriber\n,2025-01-01,192.0.2.1,S-1\n",
    );
    let b = bindings(&rows);
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].1.subject.value.as_str(), b[0].1.to), ("S-1", None));

    let rows = rows_of_bad_header();
    assert_eq!(
        skips(&rows),
        vec![
            (1, "missing column subscriber"),
            (2, "no header"),
            (3, "bad quoting")
        ]
    );
}

fn rows_of_bad_header() -> Vec<BindingRow> {
    rows(
        BindingOrigin::Static,
        "S-1,192.0.2.1,2025-01-01,\nS-2,192.0.2.2,2025-01-01,\n\"S-3\n",
    )
}

#[test]
fn empty_inputs() {
    for origin in [
        BindingOrigin::Static,
        BindingOrigin::Kea,
        BindingOrigin::Dhcpd,
        BindingOrigin::Detail,
        BindingOrigin::Cgnat,
    ] {
        for input in ["", "\n", "\r\n\r\n", "\u{feff}"] {
            assert!(rows(origin, input).is_empty(), "{origin} {input:?}");
        }
    }
}

#[test]
fn kea_v4() {
    let text = sample("kea-leases4.csv");
    let rows = rows(BindingOrigin::Kea, &text);
    assert_ordered(&rows);
    let b = bindings(&rows);
    let got: Vec<_> = b
        .iter()
        .map(|(_, b)| {
            (
                b.prefix.to_string(),
                b.subject.kind,
                b.subject.value.as_str(),
                b.from.timestamp(),
                b.to.map(|t| t.timestamp()),
                b.key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "192.0.2.10/32".to_string(),
                SubjectKind::ClientId,
                "0100163e5a1001",
                1_794_798_000,
                Some(1_794_801_600),
                "192.0.2.10/32@1794801600",
            ),
            (
                "192.0.2.11/32".to_string(),
                SubjectKind::HwAddr,
                "00:16:3e:5a:10:02",
                1_794_798_120,
                Some(1_794_801_720),
                "192.0.2.11/32@1794801720",
            ),
            // The renewal: a second interval.
            (
                "192.0.2.10/32".to_string(),
                SubjectKind::ClientId,
                "0100163e5a1001",
                1_794_799_800,
                Some(1_794_803_400),
                "192.0.2.10/32@1794803400",
            ),
            // Expired-reclaimed: the interval it had.
            (
                "192.0.2.13/32".to_string(),
                SubjectKind::ClientId,
                "0100163e5a1003",
                1_794_790_800,
                Some(1_794_794_400),
                "192.0.2.13/32@1794794400",
            ),
        ]
    );
    assert_eq!(
        skips(&rows),
        vec![
            (line_of(&text, "192.0.2.12,"), "declined lease"),
            (line_of(&text, ",0,1794799800"), "deleted lease"),
            (line_of(&text, "192.0.2.300"), "bad address"),
            (line_of(&text, "36OO"), "bad valid_lifetime"),
        ]
    );
    assert_eq!(rows, self::rows(BindingOrigin::Kea, &crlf(&text)));
}

#[test]
fn kea_v6_with_prefix_delegation() {
    let text = sample("kea-leases6.csv");
    let rows = rows(BindingOrigin::Kea, &text);
    assert_ordered(&rows);
    let b = bindings(&rows);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].1.prefix.to_string(), "2001:db8:1::1a2/128");
    assert_eq!(b[0].1.subject.kind, SubjectKind::ClientId);
    assert_eq!(b[0].1.subject.value, "0003000100163e5a1001");
    assert_eq!(b[0].1.from.timestamp(), 1_794_798_000);
    assert_eq!(b[1].1.prefix.to_string(), "2001:db8:8000:1200::/56");
    assert_eq!(b[1].1.key, "2001:db8:8000:1200::/56@1794805200");
    // The infinite lifetime: still held.
    assert_eq!(b[2].1.prefix.to_string(), "2001:db8:8000:1300::/56");
    assert_eq!(b[2].1.to, None);
    assert_eq!(b[2].1.from.timestamp(), 1_794_798_000);
    assert_eq!(
        skips(&rows),
        vec![
            (line_of(&text, "2001:db8:8000:1280::"), "host bits set"),
            (line_of(&text, "2001:db8:1::1a3"), "declined lease"),
        ]
    );
}

#[test]
fn kea_header_again_and_family_mismatch() {
    let v4 = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n";
    let v6 = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname\n";
    let input = format!(
        "{v4}192.0.2.1,00:16:3e:00:00:01,,600,1000000600,1,0,0,,0\n2001:db8::1,00:16:3e:00:00:02,,600,1000000600,1,0,0,,0\n{v6}2001:db8::1,00:01:02,600,1000000600,1,300,0,1,128,0,0,\n"
    );
    let rows = rows(BindingOrigin::Kea, &input);
    assert_eq!(bindings(&rows).len(), 2);
    assert_eq!(skips(&rows), vec![(3, "bad address")]);
    // A file without a header: every line says so.
    let rows = self::rows(
        BindingOrigin::Kea,
        "192.0.2.1,00:16:3e:00:00:01,,600,1000000600\n192.0.2.2,00:16:3e:00:00:02,,600,1000000600\n",
    );
    assert_eq!(
        skips(&rows),
        vec![(1, "missing column address"), (2, "no header")]
    );
}

#[test]
fn dhcpd_leases() {
    let text = sample("dhcpd.leases");
    let rows = rows(BindingOrigin::Dhcpd, &text);
    assert_ordered(&rows);
    let b = bindings(&rows);
    let got: Vec<_> = b
        .iter()
        .map(|(line, b)| {
            (
                *line,
                b.prefix.to_string(),
                b.subject.value.as_str(),
                b.from,
                b.to,
            )
        })
        .collect();
    let lease = |addr: &str, nth: usize| {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with(&format!("lease {addr} ")))
            .nth(nth)
            .unwrap()
            .0 as u64
            + 1
    };
    assert_eq!(
        got,
        vec![
            (
                lease("192.0.2.50", 0),
                "192.0.2.50/32".to_string(),
                "0100163e5a2001",
                t("2026-11-16T03:00:00Z"),
                Some(t("2026-11-16T15:00:00Z")),
            ),
            (
                lease("192.0.2.51", 0),
                "192.0.2.51/32".to_string(),
                "00:16:3e:5a:20:02",
                t("2026-11-16T03:10:00Z"),
                Some(t("2026-11-16T15:10:00Z")),
            ),
            (
                lease("192.0.2.52", 0),
                "192.0.2.52/32".to_string(),
                "0100163e5a2003",
                t("2026-11-16T03:10:00Z"),
                Some(t("2026-11-16T15:10:00Z")),
            ),
            // The renewal.
            (
                lease("192.0.2.50", 1),
                "192.0.2.50/32".to_string(),
                "0100163e5a2001",
                t("2026-11-16T09:00:00Z"),
                Some(t("2026-11-16T21:00:00Z")),
            ),
            // Released early: same start (same key), earlier end.
            (
                lease("192.0.2.51", 1),
                "192.0.2.51/32".to_string(),
                "00:16:3e:5a:20:02",
                t("2026-11-16T03:10:00Z"),
                Some(t("2026-11-16T04:05:31Z")),
            ),
            (
                lease("192.0.2.53", 0),
                "192.0.2.53/32".to_string(),
                "00:16:3e:5a:20:04",
                t("2026-11-16T03:15:00Z"),
                None,
            ),
            (
                line_of(&text, "iaaddr 2001:db8:1::2b4"),
                "2001:db8:1::2b4/128".to_string(),
                "0003000100163e5a3001",
                t("2026-11-16T03:00:05Z"),
                Some(t("2026-11-16T05:00:05Z")),
            ),
            (
                line_of(&text, "iaprefix 2001:db8:8000:5600::/56"),
                "2001:db8:8000:5600::/56".to_string(),
                "0003000100163e5a3001",
                t("2026-11-16T03:00:05Z"),
                Some(t("2026-11-16T05:00:05Z")),
            ),
            (
                lease("192.0.2.58", 0),
                "192.0.2.58/32".to_string(),
                "00:16:3e:5a:20:08",
                t("2026-11-16T12:01:00Z"),
                Some(t("2026-11-17T00:01:00Z")),
            ),
        ]
    );
    assert_eq!(b[1].1.key, b[4].1.key, "a release supersedes its lease");
    assert_eq!(
        skips(&rows),
        vec![
            (lease("192.0.2.54", 0), "abandoned lease"),
            (lease("192.0.2.55", 0), "bad time"),
            (line_of(&text, "frobnicate"), "unknown statement"),
            (lease("192.0.2.57", 0), "unterminated block"),
        ]
    );
    assert_eq!(rows, self::rows(BindingOrigin::Dhcpd, &crlf(&text)));
}

#[test]
fn dhcpd_cut_off_at_the_end() {
    let rows = rows(
        BindingOrigin::Dhcpd,
        "lease 192.0.2.1 {\n  starts 1 2026/11/16 03:00:00;\n  ends 1 2026/11/16 04:00:00;\n  hardware ethernet 00:16:3e:00:00:01;\n}\nlease 192.0.2.2 {\n  starts 1 2026/11/16 03:00:00;\n  ends 1 2026/11/",
    );
    assert_eq!(bindings(&rows).len(), 1);
    assert_eq!(skips(&rows), vec![(6, "unterminated block")]);
    let rows = self::rows(BindingOrigin::Dhcpd, "lease 192.0.2.3 {}\nfoo bar");
    assert_eq!(
        skips(&rows),
        vec![(1, "missing starts"), (2, "unterminated statement")]
    );
    let rows = self::rows(
        BindingOrigin::Dhcpd,
        "}\nlease 192.0.2.256 { }\nhost x { }\n",
    );
    assert_eq!(skips(&rows), vec![(1, "unexpected }"), (2, "bad address")]);
}

fn sessions(rows: &[BindingRow]) -> Vec<(u64, &BindingEvent)> {
    rows.iter()
        .filter_map(|r| match r {
            BindingRow::Event { line, event } => Some((*line, event)),
            _ => None,
        })
        .collect()
}

#[test]
fn freeradius_detail() {
    let text = sample("detail");
    let rows = rows(BindingOrigin::Detail, &text);
    assert_ordered(&rows);
    let ev = sessions(&rows);
    assert_eq!(ev.len(), 6);

    let BindingEvent::Session(start) = ev[0].1 else {
        panic!("{:?}", ev[0])
    };
    assert_eq!(ev[0].0, 1);
    assert_eq!(start.phase, SessionPhase::Start);
    assert_eq!(start.nas, "192.0.2.1");
    assert_eq!(start.session_id, "8A3C0001");
    assert_eq!(start.subject.kind, SubjectKind::Login);
    assert_eq!(start.subject.value, "u0001234@isp.example");
    let prefixes: Vec<String> = start.prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        prefixes,
        [
            "198.51.100.23/32",
            "2001:db8:ff00:12::/64",
            "2001:db8:1200:3400::/56"
        ]
    );
    // Event-Timestamp in JST.
    assert_eq!(start.at, t("2026-11-16T12:00:00Z"));
    assert_eq!(start.class.as_deref(), Some("4b414e4b492d3031"));
    assert_eq!(start.session_time, None);

    // NAS-Identifier; the NAS-assigned placeholder address left out;
    // Timestamp minus Acct-Delay-Time.
    let BindingEvent::Session(second) = ev[1].1 else {
        panic!()
    };
    assert_eq!(second.nas, "bras-tokyo-02");
    assert!(second.prefixes.is_empty());
    assert_eq!(second.at.timestamp(), 1_794_830_409 - 4);

    let BindingEvent::Session(interim) = ev[2].1 else {
        panic!()
    };
    assert_eq!(interim.phase, SessionPhase::Interim);
    assert_eq!(interim.session_time, Some(1800));
    assert_eq!(interim.at, t("2026-11-16T12:30:00Z"));

    let BindingEvent::Session(stop) = ev[3].1 else {
        panic!()
    };
    assert_eq!(stop.phase, SessionPhase::Stop);
    assert_eq!(stop.at.timestamp(), 1_794_833_100);
    assert_eq!(stop.session_time, Some(2700));

    assert_eq!(
        ev[4].1,
        &BindingEvent::NasReset {
            nas: "192.0.2.2".into(),
            at: DateTime::from_timestamp(1_794_834_000, 0).unwrap(),
        }
    );
    // No Timestamp, no Event-Timestamp: the date line, minus the delay.
    let BindingEvent::Session(last) = ev[5].1 else {
        panic!()
    };
    assert_eq!(last.nas, "2001:db8:ffff::2");
    assert_eq!(last.at, t("2026-11-16T13:04:57Z"));

    assert_eq!(
        skips(&rows),
        vec![
            (line_of(&text, "12:50:00 2026"), "missing User-Name"),
            (line_of(&text, "12:51:00 2026"), "bad address"),
            (
                line_of(&text, "12:52:00 2026"),
                "unsupported Acct-Status-Type"
            ),
            (line_of(&text, "12:53:00 2026"), "bad attribute line"),
        ]
    );
    assert_eq!(rows, self::rows(BindingOrigin::Detail, &crlf(&text)));
}

#[test]
fn detail_last_record_without_blank_line() {
    let text = "Mon Nov 16 12:00:04 2026\n\tAcct-Status-Type = Stop\n\tUser-Name = \"a\"\n\tAcct-Session-Id = \"1\"\n\tNAS-IP-Address = 192.0.2.1\nMon Nov 16 12:00:05 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"b\"\n\tAcct-Session-Id = \"2\"\n\tNAS-IP-Address = 192.0.2.1";
    let rows = rows(BindingOrigin::Detail, text);
    let ev = sessions(&rows);
    assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 6]);
    assert!(skips(&rows).is_empty());
}

#[test]
fn cgnat_csv() {
    let text = sample("cgnat.csv");
    let rows = rows(BindingOrigin::Cgnat, &text);
    assert_ordered(&rows);
    let b = bindings(&rows);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].1.subject.kind, SubjectKind::Subscriber);
    assert_eq!(b[0].1.subject.value, "S-000201");
    assert_eq!(b[0].1.prefix.to_string(), "203.0.113.7/32");
    assert_eq!(b[0].1.ports, PortRange::new(1024, 1535));
    assert_eq!(b[0].1.to, Some(t("2026-11-16T09:12:44Z")));
    assert_eq!(b[0].1.key, "S-000201|203.0.113.7:1024-1535@1794798000");
    // No subscriber: the inside address is the subject.
    assert_eq!(b[1].1.subject.kind, SubjectKind::InsideAddress);
    assert_eq!(b[1].1.subject.value, "100.64.12.35");
    assert_eq!(b[1].1.to, None);
    assert_eq!(b[2].1.from, t("2026-11-16T12:00:00Z"));
    assert_eq!(
        skips(&rows),
        vec![
            (line_of(&text, "S-000203"), "bad port range"),
            (line_of(&text, "S-000204"), "bad port"),
            (line_of(&text, "4608"), "missing subscriber"),
        ]
    );
}

#[test]
fn cgnat_juniper_syslog() {
    let text = sample("cgnat-juniper.log");
    let rows = rows(BindingOrigin::Cgnat, &text);
    assert_ordered(&rows);
    let got: Vec<_> = bindings(&rows)
        .iter()
        .map(|(line, b)| {
            (
                *line,
                b.subject.value.as_str(),
                b.prefix.to_string(),
                b.ports.unwrap().to_string(),
                b.from,
                b.to,
                b.reporter.as_deref(),
            )
        })
        .collect();
    let l = |n: &str| line_of(&text, n);
    assert_eq!(
        got,
        vec![
            (
                1,
                "100.64.12.34",
                "203.0.113.7/32".to_string(),
                "1024-1535".to_string(),
                t("2026-11-16T03:00:00Z"),
                None,
                Some("mx-cgn1"),
            ),
            // A BSD timestamp, but the card's own clock inside.
            (
                l("100.64.12.40"),
                "100.64.12.40",
                "203.0.113.7/32".to_string(),
                "1536-2047".to_string(),
                t("2026-11-16T03:05:00Z"),
                None,
                Some("mx-cgn1"),
            ),
            // An interim log of a block not seen allocated opens it.
            (
                l("100.64.12.77"),
                "100.64.12.77",
                "203.0.113.9/32".to_string(),
                "4096-4607".to_string(),
                t("2026-11-16T03:30:00Z"),
                None,
                Some("mx-cgn1"),
            ),
            // Allocated again to another inside address: the first
            // holder's interval closes there.
            (
                l("100.64.12.41"),
                "100.64.12.40",
                "203.0.113.7/32".to_string(),
                "1536-2047".to_string(),
                t("2026-11-16T03:05:00Z"),
                Some(t("2026-11-16T05:00:00Z")),
                Some("mx-cgn1"),
            ),
            (
                l("100.64.12.41"),
                "100.64.12.41",
                "203.0.113.7/32".to_string(),
                "1536-2047".to_string(),
                t("2026-11-16T05:00:00Z"),
                None,
                Some("mx-cgn1"),
            ),
            // The release closes the first allocation.
            (
                l("RELEASE: 100.64.12.34"),
                "100.64.12.34",
                "203.0.113.7/32".to_string(),
                "1024-1535".to_string(),
                t("2026-11-16T03:00:00Z"),
                Some(t("2026-11-16T09:12:44Z")),
                Some("mx-cgn1"),
            ),
        ]
    );
    let b = bindings(&rows);
    assert_eq!(
        b[0].1.key, b[5].1.key,
        "the release supersedes the open interval"
    );
    assert_eq!(
        b[0].1.key,
        "mx-cgn1|100.64.12.34|203.0.113.7:1024-1535@1794798000"
    );
    assert_eq!(
        skips(&rows),
        vec![
            (l("sshd"), "not a port-block message"),
            (l("100.64.13.1"), "release without allocation"),
            (l("mx-cgn2"), "time without year"),
            (l("70000"), "bad port"),
        ]
    );
}

#[test]
fn cgnat_cisco_syslog() {
    let text = sample("cgnat-cisco.log");
    let rows = rows(BindingOrigin::Cgnat, &text);
    assert_ordered(&rows);
    let got: Vec<_> = bindings(&rows)
        .iter()
        .map(|(line, b)| {
            (
                *line,
                b.subject.value.clone(),
                b.ports.unwrap().to_string(),
                b.from,
                b.to,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                "100.64.30.5".to_string(),
                "1024-1535".to_string(),
                t("2026-11-16T03:01:00Z"),
                None
            ),
            (
                1,
                "100.64.30.6".to_string(),
                "1536-2047".to_string(),
                t("2026-11-16T03:01:00Z"),
                None
            ),
            // DS-Lite: the B4's IPv6 address.
            (
                2,
                "2001:db8:a00:1::1".to_string(),
                "2048-2559".to_string(),
                t("2026-11-16T03:02:00Z"),
                None
            ),
            (
                4,
                "100.64.30.5".to_string(),
                "1024-1535".to_string(),
                t("2026-11-16T03:01:00Z"),
                Some(t("2026-11-16T04:10:00Z"))
            ),
        ]
    );
    assert!(
        bindings(&rows)
            .iter()
            .all(|(_, b)| b.reporter.as_deref() == Some("asr9k-cgn1"))
    );
    assert_eq!(
        skips(&rows),
        vec![(3, "unsupported Cisco record"), (5, "bad Cisco record")]
    );
}

/// A reader that gives some bytes, then fails.
struct BreaksOff<'a>(&'a [u8]);

impl Read for BreaksOff<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"));
        }
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn an_input_that_breaks_off_ends_with_its_error() {
    let samples = [
        (BindingOrigin::Static, sample("static.csv")),
        (BindingOrigin::Kea, sample("kea-leases4.csv")),
        (BindingOrigin::Dhcpd, sample("dhcpd.leases")),
        (BindingOrigin::Detail, sample("detail")),
        (BindingOrigin::Cgnat, sample("cgnat-juniper.log")),
    ];
    for (origin, text) in samples {
        let input = BufReader::with_capacity(64, BreaksOff(text.as_bytes()));
        let items: Vec<_> = sources::read(origin, input).collect();
        let (last, rest) = items.split_last().unwrap();
        assert_eq!(
            last.as_ref().unwrap_err().kind(),
            io::ErrorKind::ConnectionReset
        );
        assert!(
            rest.iter().all(Result::is_ok),
            "{origin}: the error comes last"
        );
    }
    let items: Vec<_> = sources::read(BindingOrigin::Radius, &b""[..]).collect();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].as_ref().unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn not_utf8_and_long_lines_are_skipped_with_their_line() {
    let mut input = b"subscriber,prefix,from\nS-\xff,192.0.2.1,2025-01-01\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2 << 20));
    input.extend_from_slice(b"\nS-2,192.0.2.2,2025-01-01\n");
    let rows: Vec<_> = sources::read(BindingOrigin::Static, &input[..])
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        skips(&rows),
        vec![(2, "not valid UTF-8"), (3, "line too long")]
    );
    assert_eq!(bindings(&rows)[0].0, 4);
}

#[test]
fn readers_stream() {
    // A reader yields its first row before the input ends.
    struct Endless(u64);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let line = if self.0 == 0 {
                "subscriber,prefix,from\n".to_string()
            } else {
                format!("S-{},192.0.2.1,2025-01-01\n", self.0)
            };
            self.0 += 1;
            let n = line.len().min(buf.len());
            buf[..n].copy_from_slice(&line.as_bytes()[..n]);
            Ok(n)
        }
    }
    let mut rows = sources::read(BindingOrigin::Static, BufReader::new(Endless(0)));
    assert!(matches!(
        rows.nth(999),
        Some(Ok(BindingRow::Event { line: 1001, .. }))
    ));
}

#[test]
fn buffer_boundaries_do_not_matter() {
    let samples = [
        (BindingOrigin::Static, sample("static.csv")),
        (BindingOrigin::Kea, sample("kea-leases4.csv")),
        (BindingOrigin::Kea, sample("kea-leases6.csv")),
        (BindingOrigin::Dhcpd, sample("dhcpd.leases")),
        (BindingOrigin::Detail, sample("detail")),
        (BindingOrigin::Cgnat, sample("cgnat.csv")),
        (BindingOrigin::Cgnat, sample("cgnat-juniper.log")),
        (BindingOrigin::Cgnat, sample("cgnat-cisco.log")),
    ];
    for (origin, text) in samples {
        let whole = rows(origin, &text);
        for cap in [1, 2, 3, 7, 64] {
            let small: Vec<_> =
                sources::read(origin, BufReader::with_capacity(cap, text.as_bytes()))
                    .map(Result::unwrap)
                    .collect();
            assert_eq!(whole, small, "{origin} through a {cap}-byte buffer");
        }
        // Every subject is already normalized.
        for (_, b) in bindings(&whole) {
            assert_eq!(
                kanki_directory::Subject::new(b.subject.kind, &b.subject.value).as_ref(),
                Some(&b.subject)
            );
            assert_eq!(b.prefix, b.prefix.trunc());
        }
    }
}
