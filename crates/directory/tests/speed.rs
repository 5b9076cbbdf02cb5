//! How fast the readers stream, on generated files. Ignored by default
//! (no timing is asserted); run it in release:
//!
//! ```sh
//! cargo test --release -p kanki-directory --test speed -- --ignored --nocapture
//! SPEED_ONLY=kea cargo test --release ...   # only the formats named so
//! ```
//!
//! Rates are per second of the reading thread's CPU time.

use std::fmt::Write;
use std::time::Instant;

use kanki_directory::sources;
use kanki_directory::{BindingOrigin, BindingRow};

const LINES: u64 = 2_000_000;

fn generate(header: &str, line: impl Fn(u64) -> String) -> String {
    let mut s = String::with_capacity(LINES as usize * 100);
    s.push_str(header);
    for i in 0..LINES {
        s.push_str(&line(i));
    }
    s
}

/// CPU time this thread has used, in seconds: on a shared machine, wall
/// time measures the neighbours too. Linux only; elsewhere, wall time.
fn cpu_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 / 1e9)
}

fn measure(name: &str, origin: BindingOrigin, input: &str, records: u64) {
    if std::env::var("SPEED_ONLY").is_ok_and(|only| !name.starts_with(only.as_str())) {
        return;
    }
    // Best of three, by the CPU time of this thread.
    let mut best = f64::MAX;
    let mut events = 0;
    for _ in 0..3 {
        let wall = Instant::now();
        let start = cpu_seconds(wall);
        events = 0u64;
        for row in sources::read(origin, input.as_bytes()) {
            if let BindingRow::Event { .. } = row.unwrap() {
                events += 1;
            }
        }
        best = best.min(cpu_seconds(wall) - start);
    }
    assert_eq!(events, records, "{name}: every generated record is read");
    let lines = input.lines().count() as f64;
    println!(
        "{name:<14} {records:>9} records {lines:>9} lines  {:>6.0} MB/s  {:>5.2} M records/s  {:>5.2} M lines/s",
        input.len() as f64 / best / 1e6,
        records as f64 / best / 1e6,
        lines / best / 1e6,
    );
}

#[test]
#[ignore = "a measurement, not a test: run with --release --ignored --nocapture"]
fn reader_speed() {
    let base = 1_794_798_000u64;
    let v4 = |i: u64| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);

    let static_csv = generate("subscriber,prefix,from,to\n", |i| {
        format!(
            "S-{i:07},{},2025-04-01T00:00:00Z,2026-03-31 15:00:00\n",
            v4(i)
        )
    });
    measure("static", BindingOrigin::Static, &static_csv, LINES);

    let kea4 = generate(
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n",
        |i| {
            format!(
                "{},00:16:3e:{:02x}:{:02x}:{:02x},01:00:16:3e:{:02x}:{:02x}:{:02x},3600,{},1,0,0,,0,,0\n",
                v4(i),
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                base + i
            )
        },
    );
    measure("kea v4", BindingOrigin::Kea, &kea4, LINES);

    let kea6 = generate(
        "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id\n",
        |i| {
            format!(
                "2001:db8:{:x}:{:x}00::,00:03:00:01:00:16:3e:{:02x}:{:02x}:{:02x},7200,{},1,3600,2,1,56,0,0,,,0,,,0,0\n",
                (i >> 8) & 0xffff,
                i & 255,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                base + i
            )
        },
    );
    measure("kea v6 (PD)", BindingOrigin::Kea, &kea6, LINES);

    let cgnat = generate(
        "subscriber,private_address,public_address,first_port,last_port,from,to\n",
        |i| {
            let first = 1024 + (i % 126) * 512;
            format!(
                "S-{i:07},100.64.{}.{},203.0.{}.{},{first},{},2026-11-16T03:00:00Z,2026-11-16T09:12:44Z\n",
                (i >> 8) & 255,
                i & 255,
                (i >> 16) & 255,
                (i >> 8) & 255,
                first + 511
            )
        },
    );
    measure("cgnat csv", BindingOrigin::Cgnat, &cgnat, LINES);

    // The other formats, for reference (records span several lines).
    let mut dhcpd = String::new();
    for i in 0..LINES / 8 {
        writeln!(
            dhcpd,
            "lease {} {{\n  starts 1 2026/11/16 03:00:00;\n  ends 1 2026/11/16 15:00:00;\n  binding state active;\n  hardware ethernet 00:16:3e:{:02x}:{:02x}:{:02x};\n  uid \"\\001\\000\\026>Z \\001\";\n}}",
            v4(i),
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        )
        .unwrap();
    }
    measure("dhcpd", BindingOrigin::Dhcpd, &dhcpd, LINES / 8);

    let mut detail = String::new();
    for i in 0..LINES / 10 {
        writeln!(
            detail,
            "Mon Nov 16 12:00:04 2026\n\tAcct-Status-Type = Interim-Update\n\tUser-Name = \"u{i:07}@isp.example\"\n\tAcct-Session-Id = \"{i:08X}\"\n\tFramed-IP-Address = {}\n\tNAS-IP-Address = 192.0.2.1\n\tAcct-Session-Time = 1800\n\tEvent-Timestamp = \"Nov 16 2026 21:00:00 JST\"\n\tTimestamp = {}\n",
            v4(i),
            base + i
        )
        .unwrap();
    }
    measure("detail", BindingOrigin::Detail, &detail, LINES / 10);

    let juniper = generate("", |i| {
        let first = 1024 + (i & 255) * 128;
        format!(
            "2026-11-16T12:00:00.412+09:00 mx-cgn1 (FPC Slot 2, PIC Slot 0) 2026-11-16 03:00:00: {{cgn-sset}}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.{}.{} -> 203.0.{}.{}:{first}-{} 0x6919c030\n",
            (i >> 8) & 255,
            i & 255,
            (i >> 16) & 255,
            (i >> 8) & 255,
            first + 127
        )
    });
    measure("cgnat juniper", BindingOrigin::Cgnat, &juniper, LINES);
}
