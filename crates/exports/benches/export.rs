//! Export speed: 1,000,000 names (and 10,000 IP triggers) to `io::sink()`
//! in every DNS-level format, and 100,000 indicator records as CSV and
//! JSON.
//!
//! cargo bench -p kanki-exports --bench export

use std::hint::black_box;
use std::io;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kanki_exports::{
    DnsList, RpzOptions, write_csv, write_hosts, write_json, write_plain, write_rpz, write_squid,
    write_unbound,
};
use kanki_indicators::{Category, Indicator, Kind, SourceRef, Status, Tlp};

const NAMES: usize = 1_000_000;
const IPS: usize = 10_000;
const RECORDS: usize = 100_000;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn label(&mut self, out: &mut String) {
        let len = 4 + self.next() % 12;
        for _ in 0..len {
            out.push((b'a' + (self.next() % 26) as u8) as char);
        }
    }
}

/// Names like a real list: registrable names under common TLDs, a tenth
/// of them subdomains of another listed name.
fn names(n: usize) -> Vec<String> {
    const TLDS: &[&str] = &["com", "net", "org", "jp", "co.jp", "info", "xyz", "ru"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let mut name = String::with_capacity(32);
        if out.len() % 10 == 9 {
            rng.label(&mut name);
            name.push('.');
            let parent = &out[(rng.next() as usize) % out.len()];
            name.push_str(parent);
        } else {
            rng.label(&mut name);
            if rng.next() & 3 == 0 {
                name.push('-');
                rng.label(&mut name);
            }
            name.push('.');
            name.push_str(TLDS[(rng.next() as usize) % TLDS.len()]);
        }
        out.push(name);
    }
    out
}

fn ips(n: usize) -> Vec<String> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            let r = rng.next();
            match i % 4 {
                0 => format!(
                    "{}.{}.{}.0/24",
                    1 + r % 223,
                    (r >> 8) % 256,
                    (r >> 16) % 256
                ),
                1 => format!("2001:db8:{:x}::{:x}", (r >> 8) % 65536, r % 65536),
                _ => format!(
                    "{}.{}.{}.{}",
                    1 + r % 223,
                    (r >> 8) % 256,
                    (r >> 16) % 256,
                    (r >> 24) % 256
                ),
            }
        })
        .collect()
}

fn records(n: usize) -> Vec<Indicator> {
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    names(n)
        .into_iter()
        .enumerate()
        .map(|(i, host)| Indicator {
            id: i as i64 + 1,
            kind: Kind::Url,
            value: format!("http://{host}/dl/payload.exe"),
            host: Some(host),
            category: Category::MalwareDistribution,
            confidence: 80,
            status: Status::Active,
            status_reason: None,
            first_seen: t,
            last_seen: t,
            expires_at: Some(t),
            tags: vec!["exe".into(), "emotet".into()],
            tlp: Tlp::Clear,
            sources: vec![SourceRef {
                source: "urlhaus".into(),
                source_id: Some(i.to_string()),
                reference_url: None,
                reporter: None,
                category: Category::MalwareDistribution,
                confidence: 80,
                first_seen: t,
                last_seen: t,
                expires_at: Some(t),
            }],
            evidence: vec![],
        })
        .collect()
}

fn dns_formats(c: &mut Criterion) {
    let list = DnsList::new(names(NAMES), ips(IPS));
    let mut g = c.benchmark_group("export_1m_names");
    g.sample_size(10);
    g.throughput(Throughput::Elements(NAMES as u64));
    let wild = RpzOptions::default();
    let exact = RpzOptions {
        wildcards: false,
        ..RpzOptions::default()
    };
    let garden = RpzOptions {
        action: "cname:*.garden.example.".parse().unwrap(),
        ..RpzOptions::default()
    };
    g.bench_function("rpz_wildcards", |b| {
        b.iter(|| write_rpz(io::sink(), black_box(&list), &wild).unwrap())
    });
    g.bench_function("rpz_exact", |b| {
        b.iter(|| write_rpz(io::sink(), black_box(&list), &exact).unwrap())
    });
    g.bench_function("rpz_garden_cname", |b| {
        b.iter(|| write_rpz(io::sink(), black_box(&list), &garden).unwrap())
    });
    g.bench_function("hosts", |b| {
        b.iter(|| write_hosts(io::sink(), black_box(&list), "0.0.0.0").unwrap())
    });
    g.bench_function("plain", |b| {
        b.iter(|| write_plain(io::sink(), black_box(&list)).unwrap())
    });
    g.bench_function("squid", |b| {
        b.iter(|| write_squid(io::sink(), black_box(&list)).unwrap())
    });
    g.bench_function("unbound", |b| {
        b.iter(|| write_unbound(io::sink(), black_box(&list), &wild.action).unwrap())
    });
    g.finish();
}

fn record_formats(c: &mut Criterion) {
    let recs = records(RECORDS);
    let mut g = c.benchmark_group("export_100k_records");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("csv", |b| {
        b.iter(|| write_csv(io::sink(), black_box(&recs).iter()).unwrap())
    });
    g.bench_function("json", |b| {
        b.iter(|| write_json(io::sink(), black_box(&recs).iter()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, dns_formats, record_formats);
criterion_main!(benches);
