//! hosts files: `0.0.0.0 name [name...]`, `127.0.0.1 name`, `:: name`.
//! Each name is a domain record; the entries every hosts file carries for
//! the machine itself (`localhost`, `broadcasthost`, `ip6-*`, ...) are
//! skipped as housekeeping.

use std::collections::VecDeque;
use std::net::IpAddr;

use kanki_indicators::Kind;

use crate::Row;
use crate::common::{LineFormat, record_or_skip, skip};

pub(crate) struct Hosts;

/// Names a hosts file lists for the machine and its network, not as blocks.
fn is_housekeeping(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    matches!(
        n.as_str(),
        "localhost"
            | "localhost.localdomain"
            | "localhost4"
            | "localhost4.localdomain4"
            | "localhost6"
            | "localhost6.localdomain6"
            | "local"
            | "localdomain"
            | "broadcasthost"
            | "loopback"
            | "0.0.0.0"
    ) || n.starts_with("ip6-")
        || n.parse::<IpAddr>().is_ok()
}

impl LineFormat for Hosts {
    fn line(&mut self, no: u64, text: &str, out: &mut VecDeque<Row>) {
        let text = text.split('#').next().unwrap_or_default();
        let mut tokens = text.split_ascii_whitespace();
        let Some(addr) = tokens.next() else { return };
        // `fe80::1%lo0` carries a zone index.
        let bare = addr.split('%').next().unwrap_or(addr);
        if bare.parse::<IpAddr>().is_err() {
            out.push_back(skip(no, "missing address"));
            return;
        }
        let mut any = false;
        for name in tokens {
            any = true;
            if is_housekeeping(name) {
                out.push_back(skip(no, "hosts-file housekeeping name"));
                continue;
            }
            out.push_back(match record_or_skip(no, Some(Kind::Domain), name) {
                Ok(rec) => Row::Record(rec),
                Err(s) => Row::Skip(s),
            });
        }
        if !any {
            out.push_back(skip(no, "address without names"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{example, records, skips};
    use crate::{Format, parse_bytes};

    #[test]
    fn example_file() {
        let rows = parse_bytes(Format::Hosts, &example("hosts.txt")).unwrap();
        let recs = records(&rows);
        let names: Vec<&str> = recs.iter().map(|r| r.indicator.value.as_str()).collect();
        assert!(names.contains(&"ads.tracker.example"));
        assert!(names.contains(&"cdn.malware-drop.test"));
        assert!(!names.iter().any(|n| n.contains("localhost")));
        let s = skips(&rows);
        let housekeeping = s
            .iter()
            .filter(|(_, r)| r == "hosts-file housekeeping name")
            .count();
        assert!(housekeeping >= 6, "{s:?}");
    }

    #[test]
    fn several_names_a_line() {
        let rows = parse_bytes(
            Format::Hosts,
            b"0.0.0.0 a.example B.example. # two\n:: c.example\nbad.example\n127.0.0.1\n",
        )
        .unwrap();
        let v: Vec<(u64, &str)> = records(&rows)
            .iter()
            .map(|r| (r.line, r.indicator.value.as_str()))
            .collect();
        assert_eq!(v, [(1, "a.example"), (1, "b.example"), (2, "c.example")]);
        assert_eq!(
            skips(&rows),
            [
                (3, "missing address".to_string()),
                (4, "address without names".to_string())
            ]
        );
    }
}
