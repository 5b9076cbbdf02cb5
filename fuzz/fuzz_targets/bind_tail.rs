#![no_main]
//! `kanki_directory::sources::Tail` and `TailPosition::parse`: the first
//! line is read as a kept position (and, when it parses, must read back the
//! same from the line it writes); the first byte after it picks the format
//! (Kea, dhcpd, detail) and the rest is written to a file in three pieces,
//! the follower looking after each, resuming from the position given.
//! Checks: no panic, line numbers 1-based, and the position never points
//! past the file it names.

use std::io::Write;

use kanki_directory::BindingOrigin;
use kanki_directory::BindingRow;
use kanki_directory::sources::{Tail, TailPosition};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(first);
    let resume = TailPosition::parse(&text);
    if let Some(p) = resume {
        assert_eq!(TailPosition::parse(&p.to_line()), Some(p));
    }
    let Some((&pick, body)) = rest.split_first() else {
        return;
    };
    let origin = [
        BindingOrigin::Kea,
        BindingOrigin::Dhcpd,
        BindingOrigin::Detail,
    ][pick as usize % 3];
    let dir = std::env::temp_dir().join(format!("kanki-fuzz-tail-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("followed");
    let _ = std::fs::remove_file(&path);
    let mut tail = Tail::new(origin, &path, resume).with_max_bytes(256);
    let cuts = [0, body.len() / 3, body.len() * 2 / 3, body.len()];
    for w in cuts.windows(2) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&body[w[0]..w[1]]).unwrap();
        drop(f);
        let read = tail.poll().unwrap();
        for row in &read.rows {
            let line = match row {
                BindingRow::Event { line, .. } => *line,
                BindingRow::Skip(s) => s.line,
            };
            assert!(line >= 1);
        }
        let p = tail.position().unwrap();
        assert!(p.offset <= w[1] as u64);
        assert!(p.line >= 1);
    }
});
