//! Behaviour of the policy snapshot: matching rules, allowlist precedence,
//! persistence and the handle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kanki_indicators::AllowKind;
use kanki_policy::synth::{self, XorShift64};
use kanki_policy::{LoadError, PolicyHandle, Snapshot, SnapshotBuilder, Verdict};

fn listed(names: &[(&str, i64)]) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for &(n, id) in names {
        b.add_listed(n, id);
    }
    b.build(1)
}

fn matched(v: Verdict<'_>) -> Option<&str> {
    match v {
        Verdict::Listed { matched, .. } => Some(matched),
        _ => None,
    }
}

#[test]
fn exact_and_parent_matching() {
    let s = listed(&[("bad.example", 1), ("evil.co.jp", 2)]);
    assert_eq!(
        s.lookup(b"bad.example"),
        Verdict::Listed {
            matched: "bad.example",
            indicators: &[1]
        }
    );
    for q in ["a.bad.example", "a.b.bad.example", "x.y.z.bad.example"] {
        assert_eq!(matched(s.lookup(q.as_bytes())), Some("bad.example"), "{q}");
    }
    assert_eq!(matched(s.lookup(b"www.evil.co.jp")), Some("evil.co.jp"));
    assert_eq!(s.lookup(b"example"), Verdict::NotListed);
    assert_eq!(s.lookup(b"co.jp"), Verdict::NotListed);
    assert_eq!(s.lookup(b"good.example"), Verdict::NotListed);
}

#[test]
fn most_specific_listing_wins() {
    let s = listed(&[("example", 1), ("bad.example", 2), ("x.bad.example", 3)]);
    assert_eq!(
        s.lookup(b"y.x.bad.example"),
        Verdict::Listed {
            matched: "x.bad.example",
            indicators: &[3]
        }
    );
    assert_eq!(matched(s.lookup(b"q.bad.example")), Some("bad.example"));
    assert_eq!(matched(s.lookup(b"other.example")), Some("example"));
}

#[test]
fn label_boundaries() {
    let s = listed(&[("bad.example", 1)]);
    for q in [
        "notbad.example",
        "xbad.example",
        "bad.examplex",
        "bad.example.com",
        "ad.example",
    ] {
        assert_eq!(s.lookup(q.as_bytes()), Verdict::NotListed, "{q}");
    }
    assert_eq!(matched(s.lookup(b"not.bad.example")), Some("bad.example"));
}

#[test]
fn case_insensitive_and_trailing_dot() {
    let mut b = SnapshotBuilder::new();
    b.add_listed("Long-Label-Name.Bad.EXAMPLE.", 9);
    let s = b.build(1);
    for q in [
        "long-label-name.bad.example",
        "LONG-LABEL-NAME.BAD.EXAMPLE",
        "Long-Label-Name.Bad.Example.",
        "WWW.long-label-name.bad.example.",
    ] {
        assert_eq!(
            matched(s.lookup(q.as_bytes())),
            Some("long-label-name.bad.example"),
            "{q}"
        );
    }
    assert_eq!(
        s.lookup(b"long-label-name.bad.example.."),
        Verdict::NotListed
    );
}

#[test]
fn many_labels() {
    // Past the 16 suffixes probed in one batch, the unstaged path.
    let deep: String = (0..40).map(|i| format!("l{i}.")).collect::<String>() + "bad.example";
    let mut b = SnapshotBuilder::new();
    b.add_listed("bad.example", 1);
    let tail = &deep[deep.find("l35.").unwrap()..];
    b.add_listed(tail, 2);
    b.add_allow(AllowKind::Exact, &deep, 3);
    let s = b.build(1);
    assert_eq!(
        matched(s.lookup(format!("x.{tail}").as_bytes())),
        Some(tail)
    );
    assert_eq!(
        matched(s.lookup(format!("x.{deep}").as_bytes())),
        Some(tail)
    );
    // Not on a label boundary.
    assert_eq!(
        matched(s.lookup(&deep.as_bytes()[deep.len() - 30..])),
        Some("bad.example")
    );
    assert_eq!(
        s.lookup(deep.as_bytes()),
        Verdict::Allowed {
            allow_entry: 3,
            matched_allow: &deep,
            listed: Some(tail)
        }
    );
    let dots = ".".repeat(100) + "bad.example";
    assert_eq!(matched(s.lookup(dots.as_bytes())), Some("bad.example"));
}

#[test]
fn odd_queries_are_not_listed() {
    let s = listed(&[("bad.example", 1)]);
    for q in [
        &b""[..],
        b".",
        b"..",
        b"\xff\xfe",
        b"bad.example\0",
        &[b'a'; 300],
    ] {
        assert_eq!(s.lookup(q), Verdict::NotListed);
    }
    let mut long = vec![b'a'; 300];
    long.extend_from_slice(b".bad.example");
    assert_eq!(s.lookup(&long), Verdict::NotListed);
}

#[test]
fn multiple_ids_per_name_deduped_and_sorted() {
    let s = listed(&[
        ("bad.example", 5),
        ("bad.example", 2),
        ("bad.example", 5),
        ("bad.example", -1),
    ]);
    assert_eq!(
        s.lookup(b"bad.example"),
        Verdict::Listed {
            matched: "bad.example",
            indicators: &[-1, 2, 5]
        }
    );
    assert_eq!(s.listed_names(), 1);
}

#[test]
fn empty_snapshot() {
    let s = Snapshot::empty(3);
    assert_eq!(s.generation(), 3);
    assert_eq!(s.listed_names(), 0);
    assert_eq!(s.allow_entries(), 0);
    assert_eq!(s.lookup(b"anything.example"), Verdict::NotListed);
    assert_eq!(s.iter_listed().count(), 0);
}

#[test]
fn builder_rejects_non_names() {
    let mut b = SnapshotBuilder::new();
    b.add_listed("", 1);
    b.add_listed(".", 1);
    b.add_listed("a..", 1);
    b.add_listed("bücher.example", 1);
    b.add_listed(&"a".repeat(254), 1);
    b.add_listed(&"a".repeat(253), 1);
    assert_eq!(b.rejected(), 5);
    assert_eq!(b.build(1).listed_names(), 1);
}

#[test]
fn allow_exact_vs_suffix() {
    let mut b = SnapshotBuilder::new();
    b.add_listed("bad.example", 1);
    b.add_allow(AllowKind::Exact, "x.bad.example", 10);
    b.add_allow(AllowKind::Suffix, "safe.bad.example", 11);
    let s = b.build(1);
    assert_eq!(
        s.lookup(b"x.bad.example"),
        Verdict::Allowed {
            allow_entry: 10,
            matched_allow: "x.bad.example",
            listed: Some("bad.example")
        }
    );
    // Exact does not cover children.
    assert_eq!(matched(s.lookup(b"y.x.bad.example")), Some("bad.example"));
    // Suffix covers the name and everything below.
    for q in [
        "safe.bad.example",
        "a.safe.bad.example",
        "a.b.SAFE.bad.example.",
    ] {
        assert_eq!(
            s.lookup(q.as_bytes()),
            Verdict::Allowed {
                allow_entry: 11,
                matched_allow: "safe.bad.example",
                listed: Some("bad.example")
            },
            "{q}"
        );
    }
    assert_eq!(
        matched(s.lookup(b"notsafe.bad.example")),
        Some("bad.example")
    );
    assert_eq!(s.allow_entries(), 2);
    assert_eq!(s.listed_names(), 1);
}

#[test]
fn allowlist_wins_over_more_specific_listing() {
    let mut b = SnapshotBuilder::new();
    b.add_allow(AllowKind::Suffix, "example.com", 7);
    b.add_listed("bad.example.com", 1);
    b.add_listed("example.com", 2);
    b.add_allow(AllowKind::Exact, "clean.example", 8);
    let s = b.build(1);
    assert_eq!(
        s.lookup(b"x.bad.example.com"),
        Verdict::Allowed {
            allow_entry: 7,
            matched_allow: "example.com",
            listed: Some("bad.example.com")
        }
    );
    assert_eq!(
        s.lookup(b"clean.example"),
        Verdict::Allowed {
            allow_entry: 8,
            matched_allow: "clean.example",
            listed: None
        }
    );
    // Allow-only names are not listed names.
    assert_eq!(s.lookup(b"sub.clean.example"), Verdict::NotListed);
    assert_eq!(
        s.iter_listed().map(|(n, _)| n).collect::<Vec<_>>(),
        ["bad.example.com", "example.com"]
    );
}

#[test]
fn allow_precedence_between_allow_entries() {
    let mut b = SnapshotBuilder::new();
    b.add_listed("bad.example", 1);
    b.add_allow(AllowKind::Suffix, "bad.example", 30);
    b.add_allow(AllowKind::Suffix, "bad.example", 20); // lowest id kept
    b.add_allow(AllowKind::Exact, "bad.example", 40);
    b.add_allow(AllowKind::Suffix, "in.bad.example", 50);
    let s = b.build(1);
    let allow = |q: &str| match s.lookup(q.as_bytes()) {
        Verdict::Allowed { allow_entry, .. } => allow_entry,
        v => panic!("{q}: {v:?}"),
    };
    assert_eq!(allow("bad.example"), 40); // exact on the name itself first
    assert_eq!(allow("x.bad.example"), 20);
    assert_eq!(allow("x.in.bad.example"), 50); // most specific
    assert_eq!(s.allow_entries(), 3);
    let rules: Vec<_> = s.iter_allow().collect();
    assert_eq!(
        rules,
        [
            (AllowKind::Exact, "bad.example", 40),
            (AllowKind::Suffix, "bad.example", 20),
            (AllowKind::Suffix, "in.bad.example", 50)
        ]
    );
}

#[test]
fn iter_listed_sorted_with_ids() {
    let s = listed(&[
        ("b.example", 2),
        ("a.example", 1),
        ("a.example", 3),
        ("c", 4),
    ]);
    let all: Vec<(&str, Vec<i64>)> = s.iter_listed().map(|(n, ids)| (n, ids.to_vec())).collect();
    assert_eq!(
        all,
        [
            ("a.example", vec![1, 3]),
            ("b.example", vec![2]),
            ("c", vec![4])
        ]
    );
}

/// The same question answered the slow, obvious way.
#[derive(Default)]
struct Naive {
    listed: HashMap<String, BTreeSet<i64>>,
    exact: HashMap<String, i64>,
    suffix: HashMap<String, i64>,
}

impl Naive {
    fn lookup(&self, q: &str) -> Verdict<'_> {
        let q = q.strip_suffix('.').unwrap_or(q).to_ascii_lowercase();
        if q.is_empty() {
            return Verdict::NotListed;
        }
        // Most specific first: the name itself, then each parent.
        let suffixes: Vec<&str> = std::iter::once(q.as_str())
            .chain(q.match_indices('.').map(|(i, _)| &q[i + 1..]))
            .collect();
        let listed = suffixes
            .iter()
            .find_map(|s| self.listed.get_key_value(*s))
            .map(|(k, v)| (k.as_str(), v));
        let allow = self
            .exact
            .get_key_value(suffixes[0])
            .or_else(|| suffixes.iter().find_map(|s| self.suffix.get_key_value(*s)));
        match (allow, listed) {
            (Some((name, id)), l) => Verdict::Allowed {
                allow_entry: *id,
                matched_allow: name,
                listed: l.map(|l| l.0),
            },
            (None, Some((name, _))) => Verdict::Listed {
                matched: name,
                indicators: &[],
            },
            (None, None) => Verdict::NotListed,
        }
    }
}

fn same(a: Verdict<'_>, b: Verdict<'_>, naive: &Naive) -> bool {
    match (a, b) {
        (
            Verdict::Listed {
                matched: m1,
                indicators,
            },
            Verdict::Listed { matched: m2, .. },
        ) => {
            m1 == m2
                && indicators
                    .iter()
                    .copied()
                    .eq(naive.listed[m2].iter().copied())
        }
        (a, b) => a == b,
    }
}

#[test]
fn agrees_with_naive_model() {
    let mut rng = XorShift64::new(99);
    let names = synth::domains(4_000, 5);
    let mut b = SnapshotBuilder::new();
    let mut naive = Naive::default();
    for (i, n) in names.iter().enumerate() {
        let id = (i % 700) as i64;
        b.add_listed(n, id);
        naive.listed.entry(n.clone()).or_default().insert(id);
        if rng.chance(10) {
            // Another id on a parent name, making nested listings.
            if let Some((_, parent)) = n.split_once('.') {
                b.add_listed(parent, id + 1000);
                naive
                    .listed
                    .entry(parent.to_string())
                    .or_default()
                    .insert(id + 1000);
            }
        }
        if rng.chance(5) {
            let (kind, map) = if rng.chance(50) {
                (AllowKind::Exact, &mut naive.exact)
            } else {
                (AllowKind::Suffix, &mut naive.suffix)
            };
            let target = if rng.chance(50) {
                n.clone()
            } else {
                format!("w.{n}")
            };
            let id = rng.below(1000) as i64;
            b.add_allow(kind, &target, id);
            let e = map.entry(target).or_insert(id);
            *e = (*e).min(id);
        }
    }
    let s = b.build(2);
    assert_eq!(s.listed_names(), naive.listed.len());
    assert_eq!(s.allow_entries(), naive.exact.len() + naive.suffix.len());

    let mut qs = synth::queries(&names, 8_000, 6);
    qs.extend(names.iter().map(|n| n.to_ascii_uppercase() + "."));
    qs.extend(names.iter().map(|n| format!("w.{n}")));
    qs.extend(names.iter().map(|n| format!("x{n}")));
    for q in &qs {
        let got = s.lookup(q.as_bytes());
        let want = naive.lookup(q);
        assert!(same(got, want, &naive), "{q}: got {got:?}, want {want:?}");
    }
    // The batched path answers the same, in order, including odd names and
    // a count that is not a multiple of the batch size.
    qs.extend(["", ".", "x", &"a.".repeat(40)].map(String::from));
    let mut many = Vec::new();
    s.lookup_many(qs.iter().map(|q| q.as_bytes()), |v| many.push(v));
    assert_eq!(many.len(), qs.len());
    for (q, v) in qs.iter().zip(many) {
        assert_eq!(v, s.lookup(q.as_bytes()), "{q}");
    }

    let exported: BTreeMap<&str, Vec<i64>> =
        s.iter_listed().map(|(n, ids)| (n, ids.to_vec())).collect();
    let want: BTreeMap<&str, Vec<i64>> = naive
        .listed
        .iter()
        .map(|(n, ids)| (n.as_str(), ids.iter().copied().collect()))
        .collect();
    assert_eq!(exported, want);
    let order: Vec<&str> = s.iter_listed().map(|(n, _)| n).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

fn sample() -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for (i, n) in synth::domains(3_000, 11).iter().enumerate() {
        b.add_listed(n, i as i64);
        if i % 3 == 0 {
            b.add_listed(n, -(i as i64));
        }
        if i % 50 == 0 {
            b.add_allow(AllowKind::Suffix, n, i as i64);
        }
    }
    b.add_allow(AllowKind::Exact, "allowed.example", 1);
    b.build(77)
}

fn answers(s: &Snapshot, qs: &[String]) -> Vec<String> {
    qs.iter()
        .map(|q| format!("{:?}", s.lookup(q.as_bytes())))
        .collect()
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.snapshot");
    let s = sample();
    s.save(&path).unwrap();
    let t = Snapshot::load(&path).unwrap();
    assert_eq!(t.generation(), 77);
    assert_eq!(t.listed_names(), s.listed_names());
    assert_eq!(t.allow_entries(), s.allow_entries());
    assert_eq!(t.memory_bytes(), s.memory_bytes());
    let qs = synth::queries(&synth::domains(3_000, 11), 5_000, 1);
    assert_eq!(answers(&s, &qs), answers(&t, &qs));
    assert!(s.iter_listed().eq(t.iter_listed()));
    assert!(s.iter_allow().eq(t.iter_allow()));
    // No temporary file left behind; saving again replaces.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    Snapshot::empty(5).save(&path).unwrap();
    let e = Snapshot::load(&path).unwrap();
    assert_eq!((e.generation(), e.listed_names()), (5, 0));
    assert_eq!(e.lookup(b"allowed.example"), Verdict::NotListed);
}

#[test]
fn corrupt_or_truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.snapshot");
    sample().save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad");
    let try_load = |bytes: &[u8]| {
        std::fs::write(&bad, bytes).unwrap();
        Snapshot::load(&bad)
    };

    assert!(matches!(try_load(b""), Err(LoadError::Size { .. })));
    assert!(matches!(
        try_load(b"hello, world"),
        Err(LoadError::NotASnapshot)
    ));
    assert!(matches!(
        try_load(&[b'x'; 4096]),
        Err(LoadError::NotASnapshot)
    ));
    for cut in [8, 80, 81, good.len() / 2, good.len() - 8, good.len() - 1] {
        assert!(try_load(&good[..cut]).is_err(), "truncated at {cut}");
    }
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 8]);
    assert!(matches!(try_load(&longer), Err(LoadError::Size { .. })));

    let mut v = good.clone();
    v[16] ^= 0x40; // version
    assert!(matches!(try_load(&v), Err(LoadError::Version { .. })));
    let mut v = good.clone();
    v[8..16].reverse(); // byte-order marker
    assert!(matches!(try_load(&v), Err(LoadError::ByteOrder)));

    // Flip single bits all over the file: always an error, never a panic.
    let mut rng = XorShift64::new(3);
    for _ in 0..300 {
        let mut v = good.clone();
        let at = rng.below(v.len());
        v[at] ^= 1 << rng.below(8);
        assert!(try_load(&v).is_err(), "flip at byte {at} accepted");
    }
    assert!(Snapshot::load(&dir.path().join("missing")).is_err());
    assert!(try_load(&good).is_ok());
}

#[test]
fn handle_swap_is_visible_to_readers() {
    let handle = Arc::new(PolicyHandle::new(Snapshot::empty(0)));
    let guard = handle.load();
    assert_eq!(handle.load().lookup(b"bad.example"), Verdict::NotListed);

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let h = Arc::clone(&handle);
            std::thread::spawn(move || {
                // Generations only ever go up, and each one answers as built.
                let mut last = 0;
                loop {
                    let s = h.load();
                    assert!(s.generation() >= last);
                    last = s.generation();
                    assert_eq!(s.lookup(b"a.bad.example").is_listed(), last > 0);
                    if last == 10 {
                        return;
                    }
                }
            })
        })
        .collect();
    for g in 1..=10 {
        let mut b = SnapshotBuilder::new();
        b.add_listed("bad.example", g as i64);
        let old = handle.store(b.build(g));
        assert_eq!(old.generation(), g - 1);
    }
    for r in readers {
        r.join().unwrap();
    }
    // An old guard still sees the snapshot it loaded.
    assert_eq!(guard.generation(), 0);
    let now = handle.load_full();
    assert_eq!(now.generation(), 10);
    assert_eq!(
        now.lookup(b"bad.example"),
        Verdict::Listed {
            matched: "bad.example",
            indicators: &[10]
        }
    );
}
