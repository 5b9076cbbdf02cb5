//! Times the snapshot without Criterion, for profiling with `perf` and for
//! shared machines: rates are per CPU second of this thread (from
//! `/proc/thread-self/schedstat` where there is one), best of the rounds.
//!
//! `cargo run --release -p kanki-policy --example profile -- [N] [ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

use kanki_policy::{Snapshot, SnapshotBuilder, synth};

/// CPU time of this thread in ns, or wall time where the kernel does not say.
fn cpu_ns(start: Instant) -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| start.elapsed().as_nanos() as u64)
}

fn best(rounds: usize, mut f: impl FnMut()) -> f64 {
    let origin = Instant::now();
    (0..rounds)
        .map(|_| {
            let c = cpu_ns(origin);
            f();
            (cpu_ns(origin) - c) as f64 / 1e9
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let names = synth::domains(n, 42);
    let queries = synth::QueryBatch::new(&synth::queries(&names, 1_000_000, 7));
    let avg = names.iter().map(String::len).sum::<usize>() as f64 / n as f64;

    let mut snap = None;
    let build = best(rounds.min(3), || {
        let mut b = SnapshotBuilder::with_capacity(n);
        for (i, name) in names.iter().enumerate() {
            b.add_listed(name, i as i64 + 1);
        }
        snap = Some(b.build(1));
    });
    let snap = snap.expect("built");
    println!(
        "{n} names, avg {avg:.1} bytes: build {:.0} ms, {} heap bytes = {:.1} bytes/domain",
        build * 1e3,
        snap.memory_bytes(),
        snap.memory_bytes() as f64 / n as f64
    );

    let mut listed = 0usize;
    let single = best(rounds, || {
        listed = 0;
        for q in queries.iter() {
            listed += usize::from(snap.lookup(black_box(q)).is_listed());
        }
    });
    let mut listed_many = 0usize;
    let many = best(rounds, || {
        listed_many = 0;
        snap.lookup_many(queries.iter().map(black_box), |v| {
            listed_many += usize::from(v.is_listed())
        });
    });
    assert_eq!(listed, listed_many);
    println!(
        "lookup {:.2} M/s, lookup_many {:.2} M/s ({listed} of {} listed)",
        queries.len() as f64 / single / 1e6,
        queries.len() as f64 / many / 1e6,
        queries.len()
    );

    let dir = std::env::temp_dir().join(format!("kanki-policy-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("policy.snapshot");
    let save = best(rounds.min(3), || snap.save(&path).expect("save"));
    let load = best(rounds.min(3), || {
        black_box(Snapshot::load(&path).expect("load"));
    });
    println!("save {:.0} ms, load {:.0} ms", save * 1e3, load * 1e3);
    let _ = std::fs::remove_dir_all(&dir);
}
