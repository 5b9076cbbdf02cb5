//! Quick throughput check without Criterion: parses a synthetic URLhaus
//! CSV a few times and prints rows/s by this thread's CPU time (Linux
//! schedstat, so that other processes on a busy machine count less) and by
//! wall time.
//!
//! `cargo run --release -p kanki-feeds --example throughput [ROWS]`

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use kanki_feeds::{Format, Row, parse, synth};
use kanki_indicators::{Kind, normalize_as};

fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let data: Arc<[u8]> = synth::urlhaus_csv(rows, 42).into();
    println!("{rows} rows, {} MB", data.len() / 1_000_000);
    let urls: Vec<String> = parse(Format::Urlhaus, Box::new(Cursor::new(data.clone())))
        .unwrap()
        .filter_map(|r| match r {
            Row::Record(r) => Some(r.indicator.value),
            Row::Skip(_) => None,
        })
        .collect();
    for pass in 1..=3 {
        let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
        let mut records = 0;
        for row in parse(Format::Urlhaus, Box::new(Cursor::new(data.clone()))).unwrap() {
            records += usize::from(matches!(row, Row::Record(_)));
        }
        let wall = t0.elapsed().as_secs_f64();
        assert_eq!(records, rows);
        let cpu = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) => format!(
                "{:.0} rows/s by CPU time",
                rows as f64 / ((b - a) as f64 / 1e9)
            ),
            _ => "CPU time unknown".into(),
        };
        println!(
            "pass {pass}: {:.0} rows/s by wall time, {cpu}",
            rows as f64 / wall
        );
    }
    // URL normalization alone, on the already normalized URLs.
    let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
    for u in &urls {
        std::hint::black_box(normalize_as(Kind::Url, u).unwrap());
    }
    let wall = t0.elapsed().as_secs_f64();
    if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
        println!(
            "normalize_as(Url) alone: {:.0} URLs/s by wall time, {:.0} by CPU time",
            urls.len() as f64 / wall,
            urls.len() as f64 / ((b - a) as f64 / 1e9)
        );
    }
}
