//! Policy snapshot at 1,000,000 listed names: build, lookup (half matching a
//! listed parent, half not) one name at a time and in batches, save and load;
//! and lookups on a 10,000-name snapshot, which stays in cache, for the cost
//! of the computation alone.
//!
//! `cargo bench -p kanki-policy`; `KANKI_BENCH_N` changes the size.
//! Memory per domain is printed before the runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kanki_policy::{Snapshot, SnapshotBuilder, synth};

fn size() -> usize {
    std::env::var("KANKI_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn build(names: &[String]) -> Snapshot {
    let mut b = SnapshotBuilder::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        b.add_listed(n, i as i64 + 1);
    }
    b.build(1)
}

fn bench(c: &mut Criterion) {
    let n = size();
    let names = synth::domains(n, 42);
    let queries = synth::QueryBatch::new(&synth::queries(&names, 1_000_000, 7));
    let avg = names.iter().map(String::len).sum::<usize>() as f64 / n as f64;

    let t = Instant::now();
    let snap = build(&names);
    let built = t.elapsed();
    eprintln!(
        "snapshot: {} names (avg {avg:.1} bytes), built in {built:.2?}, {} heap bytes = {:.1} bytes/domain",
        snap.listed_names(),
        snap.memory_bytes(),
        snap.memory_bytes() as f64 / n as f64
    );

    let mut g = c.benchmark_group(format!("snapshot_{n}"));
    g.sample_size(10).measurement_time(Duration::from_secs(10));

    g.bench_function("build", |b| b.iter(|| black_box(build(&names))));

    g.throughput(Throughput::Elements(queries.len() as u64));
    g.bench_function("lookup_mixed", |b| {
        b.iter(|| {
            let mut listed = 0usize;
            for q in queries.iter() {
                listed += usize::from(snap.lookup(black_box(q)).is_listed());
            }
            listed
        })
    });

    g.bench_function("lookup_many_mixed", |b| {
        b.iter(|| {
            let mut listed = 0usize;
            snap.lookup_many(queries.iter().map(black_box), |v| {
                listed += usize::from(v.is_listed())
            });
            listed
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.snapshot");
    g.throughput(Throughput::Bytes(snap.memory_bytes() as u64));
    g.bench_function("save", |b| b.iter(|| snap.save(&path).expect("save")));
    snap.save(&path).expect("save");
    g.bench_function("load", |b| b.iter(|| Snapshot::load(&path).expect("load")));
    g.finish();

    let small_names = synth::domains(10_000, 42);
    let small = build(&small_names);
    let small_queries = synth::QueryBatch::new(&synth::queries(&small_names, 1_000_000, 7));
    let mut g = c.benchmark_group("snapshot_10000");
    g.sample_size(10)
        .throughput(Throughput::Elements(small_queries.len() as u64));
    g.bench_function("lookup_mixed", |b| {
        b.iter(|| {
            let mut listed = 0usize;
            for q in small_queries.iter() {
                listed += usize::from(small.lookup(black_box(q)).is_listed());
            }
            listed
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
