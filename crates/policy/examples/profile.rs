//! Times the snapshot at a given size without Criterion, for profiling with
//! `perf`: `cargo run --release -p kanki-policy --example profile [N] [ROUNDS]`.

use std::hint::black_box;
use std::time::Instant;

use kanki_policy::{Snapshot, SnapshotBuilder, synth};

/// CPU time of this thread: wall time is meaningless on a shared machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let names = synth::domains(n, 42);
    let queries = synth::queries(&names, 1_000_000, 7);
    let avg = names.iter().map(String::len).sum::<usize>() as f64 / n as f64;

    let t = Instant::now();
    let mut b = SnapshotBuilder::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        b.add_listed(name, i as i64 + 1);
    }
    let snap = b.build(1);
    println!(
        "build {n} names (avg {avg:.1} B): {:.0?}, {:.1} bytes/domain",
        t.elapsed(),
        snap.memory_bytes() as f64 / n as f64
    );

    {
        let set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut wrong = 0;
        for q in &queries {
            let want = std::iter::once(q.as_str())
                .chain(q.match_indices('.').map(|(i, _)| &q[i + 1..]))
                .any(|s| set.contains(s));
            if want != snap.lookup(q.as_bytes()).is_listed() {
                if wrong < 5 {
                    println!(
                        "MISMATCH {q}: want {want} got {:?}",
                        snap.lookup(q.as_bytes())
                    );
                }
                wrong += 1;
            }
        }
        println!("mismatches: {wrong}");
    }
    let batch = synth::QueryBatch::new(&queries);
    if std::env::var_os("CALIBRATE").is_some() {
        for _ in 0..3 {
            let c = cpu_ns();
            let mut acc = 0u64;
            for q in batch.iter() {
                for &b in black_box(q) {
                    acc = acc.wrapping_mul(31).wrapping_add(b as u64);
                }
            }
            black_box(acc);
            let c1 = cpu_ns();
            println!(
                "calibrate: {:.1} ns/query byte-loop",
                (c1 - c) as f64 / batch.len() as f64
            );
            black_box(kanki_policy::hash_only(batch.iter()));
            println!(
                "hash only: {:.1} ns/query",
                (cpu_ns() - c1) as f64 / batch.len() as f64
            );
        }
    }
    for _ in 0..rounds {
        let t = Instant::now();
        let c = cpu_ns();
        let mut listed = 0usize;
        for q in batch.iter() {
            listed += usize::from(snap.lookup(black_box(q)).is_listed());
        }
        let dt = t.elapsed();
        let cpu = (cpu_ns() - c) as f64 / 1e9;
        println!(
            "lookup: {:.2} M/s wall, {:.2} M/s cpu ({listed} listed of {})",
            queries.len() as f64 / dt.as_secs_f64() / 1e6,
            queries.len() as f64 / cpu / 1e6,
            queries.len()
        );
    }

    for _ in 0..rounds {
        let t = Instant::now();
        let c = cpu_ns();
        let mut listed = 0usize;
        snap.lookup_many(batch.iter(), |v| listed += usize::from(v.is_listed()));
        let dt = t.elapsed();
        let cpu = (cpu_ns() - c) as f64 / 1e9;
        println!(
            "lookup_many: {:.2} M/s wall, {:.2} M/s cpu ({listed} listed of {})",
            queries.len() as f64 / dt.as_secs_f64() / 1e6,
            queries.len() as f64 / cpu / 1e6,
            queries.len()
        );
    }

    let dir = std::env::temp_dir().join(format!("kanki-policy-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("policy.snapshot");
    let t = Instant::now();
    snap.save(&path).expect("save");
    println!("save: {:.0?}", t.elapsed());
    for _ in 0..rounds.min(3) {
        let t = Instant::now();
        let c = cpu_ns();
        let loaded = Snapshot::load(&path).expect("load");
        println!(
            "load: {:.0?} wall, {:.0} ms cpu ({} names)",
            t.elapsed(),
            (cpu_ns() - c) as f64 / 1e6,
            loaded.listed_names()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
