//! Cowrie's JSON log (`cowrie.json`: one object a line), grouped per
//! session: a session's connect, logins, commands and downloads become
//! one event, made when the session closes (or the log ends).
//!
//! The class follows what the source did: a download or a successful
//! login followed by commands is an infected machine at work
//! (`infected-system`), login attempts alone are `brute-force`, a bare
//! connection is a `scanner`.
//!
//! Memory is bounded: a session whose record grows past
//! [`crate::MAX_RECORD`] is made into an event then (and goes on as a new
//! one), and when the open sessions hold more than [`OPEN_BYTES`] or
//! number more than [`OPEN_SESSIONS`], the oldest is made into an event.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;

use serde_json::Value;

use crate::{Event, EventsError, Item, Items, Skipped, parse_time};

#[derive(Default)]
struct Session {
    first_line: u64,
    raw: Vec<u8>,
    connect: Option<(Value, u64)>,
    logins_failed: u32,
    logins_ok: u32,
    usernames: Vec<String>,
    passwords: Vec<String>,
    commands: Vec<String>,
    downloads: Vec<(String, String)>,
}

impl Session {
    fn add(&mut self, v: &Value, text: &str) {
        if !self.raw.is_empty() {
            self.raw.push(b'\n');
        }
        self.raw.extend_from_slice(text.as_bytes());
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match v.get("eventid").and_then(Value::as_str).unwrap_or("") {
            "cowrie.login.success" | "cowrie.login.failed" => {
                if v["eventid"] == "cowrie.login.success" {
                    self.logins_ok += 1;
                } else {
                    self.logins_failed += 1;
                }
                if let Some(u) = s("username")
                    && !self.usernames.contains(&u)
                {
                    self.usernames.push(u);
                }
                if let Some(p) = s("password")
                    && !self.passwords.contains(&p)
                {
                    self.passwords.push(p);
                }
            }
            id if id.starts_with("cowrie.command.") => {
                if let Some(c) = s("input") {
                    self.commands.push(c);
                }
            }
            "cowrie.session.file_download" | "cowrie.session.file_upload" => {
                self.downloads.push((
                    s("url").unwrap_or_default(),
                    s("shasum").unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }

    fn event(self) -> Item {
        let line = self.first_line;
        let Some((c, _)) = self.connect else {
            return Item::Skipped(Skipped {
                line,
                reason: "a session without its cowrie.session.connect".into(),
            });
        };
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        let n = |k: &str| {
            c.get(k)
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        };
        let Some(ip) = s("src_ip").and_then(|a| a.parse().ok()) else {
            return Item::Skipped(Skipped {
                line,
                reason: "src_ip is missing or not an address".into(),
            });
        };
        let Some(t) = s("timestamp").and_then(parse_time) else {
            return Item::Skipped(Skipped {
                line,
                reason: "timestamp is missing or not a time".into(),
            });
        };
        let (taxonomy, class) =
            if !self.downloads.is_empty() || (self.logins_ok > 0 && !self.commands.is_empty()) {
                ("malicious-code", "infected-system")
            } else if self.logins_ok + self.logins_failed > 0 {
                ("intrusion-attempts", "brute-force")
            } else {
                ("information-gathering", "scanner")
            };
        let mut e = Event::new(ip, t, taxonomy, class, "cowrie", "kanki sensors");
        e.source_port = n("src_port");
        e.destination_ip = s("dst_ip").and_then(|a| a.parse().ok());
        e.destination_port = n("dst_port");
        e.transport = Some("tcp".into());
        e.identifier = Some("cowrie".into());
        if let Some(p) = s("protocol") {
            e.application = Some(p.to_string());
        }
        if let Some(id) = s("session") {
            e.extra.insert("extra.session".into(), id.to_string());
        }
        let mut put = |k: &str, v: &[String]| {
            if !v.is_empty() {
                e.extra.insert(k.into(), v.join("\n"));
            }
        };
        put("destination.account", &self.usernames);
        put("extra.passwords", &self.passwords);
        put("extra.commands", &self.commands);
        let urls: Vec<String> = self.downloads.iter().map(|d| d.0.clone()).collect();
        let hashes: Vec<String> = self.downloads.iter().map(|d| d.1.clone()).collect();
        put("destination.url", &urls);
        put("malware.hash.sha256", &hashes);
        e.extra.insert(
            "extra.logins".into(),
            format!(
                "{} failed, {} succeeded",
                self.logins_failed, self.logins_ok
            ),
        );
        e.raw = self.raw;
        Item::Event(Box::new(e))
    }
}

/// Most bytes of raw records held in open sessions.
const OPEN_BYTES: usize = 32 << 20;
/// Most sessions held open.
const OPEN_SESSIONS: usize = 100_000;

/// Parses a Cowrie JSON log. Sessions still open at the end of the input
/// are made into events then.
pub fn parse_cowrie(input: Box<dyn BufRead + Send>) -> Items {
    let mut lines = crate::lines(input);
    let mut sessions: HashMap<String, Session> = HashMap::new();
    // Sessions in the order they opened, by id and first line (an entry
    // whose session closed, or was made anew, is passed over).
    let mut order: VecDeque<(String, u64)> = VecDeque::new();
    let mut open_bytes = 0usize;
    let mut line = 0u64;
    let mut pending: std::collections::VecDeque<Result<Item, EventsError>> = Default::default();
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        loop {
            if let Some(i) = pending.pop_front() {
                return Some(i);
            }
            if done {
                return None;
            }
            let text = match lines.next() {
                None => {
                    done = true;
                    for (id, first) in order.drain(..) {
                        if sessions.get(&id).is_some_and(|s| s.first_line == first)
                            && let Some(s) = sessions.remove(&id)
                        {
                            pending.push_back(Ok(s.event()));
                        }
                    }
                    continue;
                }
                Some(Err(e)) => {
                    done = true;
                    return Some(Err(e.into()));
                }
                Some(Ok(Some(t))) => t,
                Some(Ok(None)) => {
                    line += 1;
                    return Some(Ok(skipped(line, &crate::too_long())));
                }
            };
            line += 1;
            if text.trim().is_empty() {
                continue;
            }
            let v: Value = match serde_json::from_str(&text) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => return Some(Ok(skipped(line, "not a JSON object"))),
                Err(e) => return Some(Ok(skipped(line, &format!("not JSON: {e}")))),
            };
            let Some(id) = v.get("session").and_then(Value::as_str).map(str::to_string) else {
                return Some(Ok(skipped(line, "no session")));
            };
            let eventid = v.get("eventid").and_then(Value::as_str).unwrap_or("");
            // A session grown too large is made into an event now.
            if let Some(s) = sessions.get(&id)
                && s.raw.len() + text.len() > crate::MAX_RECORD
                && let Some(s) = sessions.remove(&id)
            {
                open_bytes -= s.raw.len();
                pending.push_back(Ok(s.event()));
            }
            let s = sessions.entry(id.clone()).or_insert_with(|| {
                order.push_back((id.clone(), line));
                Session {
                    first_line: line,
                    ..Default::default()
                }
            });
            if eventid == "cowrie.session.connect" {
                s.connect = Some((v.clone(), line));
            }
            let before = s.raw.len();
            s.add(&v, &text);
            open_bytes += s.raw.len() - before;
            if eventid == "cowrie.session.closed"
                && let Some(s) = sessions.remove(&id)
            {
                open_bytes -= s.raw.len();
                pending.push_back(Ok(s.event()));
            }
            // Too much open: the oldest sessions are made into events.
            while open_bytes > OPEN_BYTES || sessions.len() > OPEN_SESSIONS {
                let Some((id, first)) = order.pop_front() else {
                    break;
                };
                if sessions.get(&id).is_some_and(|s| s.first_line == first)
                    && let Some(s) = sessions.remove(&id)
                {
                    open_bytes -= s.raw.len();
                    pending.push_back(Ok(s.event()));
                }
            }
            // Entries of closed sessions are dropped as they reach the front.
            while order
                .front()
                .is_some_and(|(id, first)| sessions.get(id).is_none_or(|s| s.first_line != *first))
            {
                order.pop_front();
            }
        }
    }))
}

fn skipped(line: u64, reason: &str) -> Item {
    Item::Skipped(Skipped {
        line,
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_become_events() {
        let log = r#"{"eventid":"cowrie.session.connect","src_ip":"192.0.2.5","src_port":41000,"dst_ip":"127.0.0.1","dst_port":2222,"session":"a1","protocol":"ssh","timestamp":"2024-05-01T10:00:00.123456Z"}
{"eventid":"cowrie.session.connect","src_ip":"192.0.2.6","src_port":41001,"dst_ip":"127.0.0.1","dst_port":2222,"session":"b2","protocol":"ssh","timestamp":"2024-05-01T10:00:01Z"}
{"eventid":"cowrie.login.failed","username":"root","password":"123456","session":"a1","timestamp":"2024-05-01T10:00:02Z"}
{"eventid":"cowrie.login.success","username":"root","password":"admin","session":"a1","timestamp":"2024-05-01T10:00:03Z"}
{"eventid":"cowrie.command.input","input":"uname -a","session":"a1","timestamp":"2024-05-01T10:00:04Z"}
not json
{"eventid":"cowrie.session.closed","session":"a1","timestamp":"2024-05-01T10:00:05Z"}
"#;
        let items: Vec<Item> =
            parse_cowrie(Box::new(std::io::Cursor::new(log.as_bytes().to_vec())))
                .map(Result::unwrap)
                .collect();
        assert!(matches!(&items[0], Item::Skipped(s) if s.line == 6));
        let Item::Event(a) = &items[1] else {
            panic!("{:?}", items[1])
        };
        assert_eq!(a.source_ip.to_string(), "192.0.2.5");
        assert_eq!(a.source_port, Some(41000));
        assert_eq!(a.class, "infected-system");
        assert_eq!(a.extra["destination.account"], "root");
        assert_eq!(a.extra["extra.commands"], "uname -a");
        let Item::Event(b) = &items[2] else { panic!() };
        assert_eq!(b.class, "scanner");
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn open_sessions_are_bounded_oldest_first() {
        let mut log = String::new();
        let n = OPEN_SESSIONS + 10;
        for i in 0..n {
            log.push_str(&format!(
                "{{\"eventid\":\"cowrie.session.connect\",\"session\":\"s{i}\",\"src_ip\":\"192.0.2.1\",\"src_port\":{},\"timestamp\":\"2024-05-01T10:00:00Z\"}}\n",
                1000 + i % 60000
            ));
        }
        let items: Vec<Item> = parse_cowrie(Box::new(std::io::Cursor::new(log.into_bytes())))
            .map(Result::unwrap)
            .collect();
        assert_eq!(items.len(), n, "every session once");
        // The oldest came out first, before the log ended.
        let Item::Event(first) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert!(String::from_utf8_lossy(&first.raw).contains("\"s0\""));
    }
}
