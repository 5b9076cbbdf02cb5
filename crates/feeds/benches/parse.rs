//! Parsing speed of a 1,000,000-row URLhaus CSV (the target is at least
//! 1,000,000 rows/s on one core, URL normalization included), and the share
//! of it that is URL normalization alone.

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kanki_feeds::{Format, Row, parse, synth};
use kanki_indicators::{Kind, normalize_as};

const ROWS: usize = 1_000_000;

fn urlhaus(c: &mut Criterion) {
    let data: Arc<[u8]> = synth::urlhaus_csv(ROWS, 42).into();
    let urls: Vec<String> = parse(Format::Urlhaus, Box::new(Cursor::new(data.clone())))
        .unwrap()
        .filter_map(|r| match r {
            Row::Record(r) => Some(r.indicator.value),
            Row::Skip(_) => None,
        })
        .collect();
    assert_eq!(urls.len(), ROWS);

    let mut g = c.benchmark_group("urlhaus_csv_1m");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            let rows = parse(Format::Urlhaus, Box::new(Cursor::new(data.clone()))).unwrap();
            let mut records = 0usize;
            for row in rows {
                if let Row::Record(r) = row {
                    records += 1;
                    black_box(&r);
                }
            }
            assert_eq!(records, ROWS);
        })
    });
    g.bench_function("normalize_url_only", |b| {
        b.iter(|| {
            for u in &urls {
                black_box(normalize_as(Kind::Url, u).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, urlhaus);
criterion_main!(benches);
