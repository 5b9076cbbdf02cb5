//! Replay detection past the duplicate cache: a record already stored, or
//! older than what its session (or its NAS's last restart) has already
//! said, is a replay, however long after it comes back.
//!
//! The duplicate cache ([`crate::server`]) recognizes a NAS's
//! retransmission of one datagram for a few seconds. A copy captured on
//! the way and sent again later, or a NAS resending after that, is a new
//! datagram with the same record. Applied again, an old Start would
//! reopen a session that has ended, and an old Accounting-On would close
//! sessions; so what each session has said is kept for as long as the
//! session lives, and a record it has already said is a replay:
//!
//! * a Start with the time of the Start stored;
//! * an Interim-Update not newer than the newest one stored;
//! * a Stop not newer than the Stop stored;
//! * once the session has stopped, any Start or Interim-Update from before
//!   its Stop (it would reopen the session).
//!
//! A record's time is its Event-Timestamp. A NAS that sends no
//! Event-Timestamp has its records placed by Acct-Session-Time instead
//! (which grows along a session; a Start's is 0), and its
//! Accounting-On/Off cannot be placed at all; [`crate::server::ServerConfig::require_event_timestamp`]
//! refuses such records.
//!
//! A session is kept until its newest record is older than the record age
//! window ([`crate::server::ServerConfig::max_record_age`]); records older
//! than that are refused before they get here, so forgetting it then
//! loses nothing. An Accounting-On/Off forgets the NAS's sessions (a
//! restarted NAS may reuse session ids) and keeps its time: any record
//! from before it is a replay. At most `capacity` sessions are kept;
//! past it, new sessions are not tracked (and counted).

use std::collections::HashMap;
use std::hash::BuildHasher;

/// A record's place: timed or not, the time (or session time), the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    timed: bool,
    at: u64,
    /// 0 Start, 1 Interim-Update, 2 Stop.
    rank: u8,
}

/// What the guard is asked about one record.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub nas: String,
    /// `None` for Accounting-On/Off.
    pub session: Option<String>,
    pub place: Place,
}

impl Record {
    /// A session record: `rank` 0 Start, 1 Interim-Update, 2 Stop.
    pub fn session(
        nas: &str,
        session: &str,
        rank: u8,
        event_timestamp: Option<u32>,
        session_time: Option<u32>,
    ) -> Record {
        Record {
            nas: nas.to_string(),
            session: Some(session.to_string()),
            place: place(rank, event_timestamp, session_time),
        }
    }

    /// An Accounting-On or Accounting-Off.
    pub fn reset(nas: &str, event_timestamp: Option<u32>) -> Record {
        Record {
            nas: nas.to_string(),
            session: None,
            place: place(0, event_timestamp, None),
        }
    }
}

fn place(rank: u8, event_timestamp: Option<u32>, session_time: Option<u32>) -> Place {
    match event_timestamp {
        Some(t) => Place {
            timed: true,
            at: u64::from(t),
            rank,
        },
        None => Place {
            timed: false,
            at: u64::from(session_time.unwrap_or(0)),
            rank,
        },
    }
}

/// What one session has said (times as in [`Place::at`]).
#[derive(Clone, Copy, Debug)]
struct Said {
    timed: bool,
    start: Option<u64>,
    interim: Option<u64>,
    stop: Option<u64>,
    /// When it may be forgotten (Unix seconds).
    expires: i64,
}

impl Said {
    fn has_said(&self, p: Place) -> bool {
        if p.timed != self.timed {
            return false;
        }
        let stopped_after = self.stop.is_some_and(|s| p.at <= s);
        match p.rank {
            0 => stopped_after || self.start == Some(p.at),
            1 => stopped_after || self.interim.is_some_and(|i| p.at <= i),
            _ => stopped_after,
        }
    }

    fn say(&mut self, p: Place) {
        if p.timed != self.timed {
            *self = Said {
                timed: p.timed,
                start: None,
                interim: None,
                stop: None,
                expires: self.expires,
            };
        }
        let newest = |old: Option<u64>| Some(old.map_or(p.at, |o| o.max(p.at)));
        match p.rank {
            0 => self.start = Some(p.at),
            1 => self.interim = newest(self.interim),
            _ => self.stop = newest(self.stop),
        }
    }
}

#[derive(Default)]
struct Nas {
    /// The newest timed Accounting-On/Off: records from before it are
    /// replays.
    reset: Option<u64>,
    /// Session id (keyed hash) → what it has said.
    sessions: HashMap<u64, Said, foldhash::fast::RandomState>,
}

pub(crate) struct ReplayGuard {
    nases: HashMap<String, Nas>,
    hasher: foldhash::fast::RandomState,
    /// Seconds a session is kept past its newest record.
    window: i64,
    capacity: usize,
    sessions: usize,
    last_sweep: i64,
    /// Sessions not tracked because the guard was full.
    pub untracked: u64,
}

impl ReplayGuard {
    pub fn new(window_secs: i64, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            nases: HashMap::new(),
            hasher: foldhash::fast::RandomState::default(),
            window: window_secs.max(1),
            capacity,
            sessions: 0,
            last_sweep: 0,
            untracked: 0,
        }
    }

    /// Whether `r` replays a record already stored.
    pub fn is_replay(&self, r: &Record) -> bool {
        let Some(nas) = self.nases.get(&r.nas) else {
            return false;
        };
        match &r.session {
            None => r.place.timed && nas.reset.is_some_and(|t| r.place.at <= t),
            Some(s) => {
                if r.place.timed && nas.reset.is_some_and(|t| r.place.at < t) {
                    return true;
                }
                nas.sessions
                    .get(&self.hasher.hash_one(s))
                    .is_some_and(|said| said.has_said(r.place))
            }
        }
    }

    /// Remembers `r`, stored at `now` (Unix seconds).
    pub fn stored(&mut self, r: &Record, now: i64) {
        self.sweep(now);
        let expires = (r.place.at as i64).max(now).saturating_add(self.window);
        let full = self.sessions + self.nases.len() >= self.capacity;
        if !self.nases.contains_key(&r.nas) && full {
            self.untracked += 1;
            return;
        }
        let nas = self.nases.entry(r.nas.clone()).or_default();
        match &r.session {
            None => {
                self.sessions -= nas.sessions.len();
                nas.sessions.clear();
                if r.place.timed {
                    nas.reset = Some(nas.reset.map_or(r.place.at, |t| t.max(r.place.at)));
                }
            }
            Some(s) => {
                let key = self.hasher.hash_one(s);
                match nas.sessions.get_mut(&key) {
                    Some(said) => {
                        said.say(r.place);
                        said.expires = said.expires.max(expires);
                    }
                    None if full => self.untracked += 1,
                    None => {
                        let mut said = Said {
                            timed: r.place.timed,
                            start: None,
                            interim: None,
                            stop: None,
                            expires,
                        };
                        said.say(r.place);
                        nas.sessions.insert(key, said);
                        self.sessions += 1;
                    }
                }
            }
        }
    }

    /// Forgets sessions whose newest record has left the window; at most
    /// once a minute.
    fn sweep(&mut self, now: i64) {
        if now - self.last_sweep < 60 {
            return;
        }
        self.last_sweep = now;
        let mut kept = 0;
        for nas in self.nases.values_mut() {
            nas.sessions.retain(|_, said| said.expires > now);
            kept += nas.sessions.len();
        }
        let window = self.window as u64;
        self.nases.retain(|_, n| {
            !n.sessions.is_empty() || n.reset.is_some_and(|t| t + window > now.max(0) as u64)
        });
        self.sessions = kept;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_record_not_newer_than_the_stored_one_is_a_replay() {
        let now = 1_800_000_000;
        let t = now as u32;
        let mut g = ReplayGuard::new(86_400, 100);
        let start = Record::session("nas", "S1", 0, Some(t), None);
        assert!(!g.is_replay(&start));
        g.stored(&start, now);
        assert!(g.is_replay(&start));
        let interim = Record::session("nas", "S1", 1, Some(t + 300), Some(300));
        assert!(!g.is_replay(&interim));
        g.stored(&interim, now);
        let stop = Record::session("nas", "S1", 2, Some(t + 600), Some(600));
        g.stored(&stop, now);
        // After the Stop, the Start and the Interim-Update replayed; the
        // Stop replayed; another session and another NAS are new.
        assert!(g.is_replay(&start) && g.is_replay(&interim) && g.is_replay(&stop));
        assert!(!g.is_replay(&Record::session("nas", "S2", 0, Some(t), None)));
        assert!(!g.is_replay(&Record::session("nas2", "S1", 0, Some(t), None)));
        // A Start and a Stop in the same second: the Stop is newer.
        let quick = Record::session("nas", "Q", 0, Some(t), None);
        g.stored(&quick, now);
        assert!(!g.is_replay(&Record::session("nas", "Q", 2, Some(t), Some(0))));

        // Without Event-Timestamp: placed by Acct-Session-Time.
        let s = Record::session("nas", "U", 0, None, None);
        g.stored(&s, now);
        assert!(g.is_replay(&s));
        let i = Record::session("nas", "U", 1, None, Some(300));
        assert!(!g.is_replay(&i));
        g.stored(&i, now);
        assert!(g.is_replay(&i));
        assert!(!g.is_replay(&Record::session("nas", "U", 1, None, Some(600))));

        // Out of order before the Stop: an Interim-Update stored first
        // does not make the Start a replay.
        g.stored(
            &Record::session("nas", "O", 1, Some(t + 300), Some(300)),
            now,
        );
        assert!(!g.is_replay(&Record::session("nas", "O", 0, Some(t), None)));
    }

    #[test]
    fn a_nas_restart_makes_older_records_replays_and_forgets_sessions() {
        let now = 1_800_000_000;
        let t = now as u32;
        let mut g = ReplayGuard::new(86_400, 100);
        g.stored(&Record::session("nas", "S1", 0, None, None), now);
        let on = Record::reset("nas", Some(t + 10));
        assert!(!g.is_replay(&on));
        g.stored(&on, now);
        assert!(g.is_replay(&on));
        assert_eq!(g.len(), 0);
        // Ids reused after the restart are new sessions; records from
        // before it are replays.
        assert!(!g.is_replay(&Record::session("nas", "S1", 0, None, None)));
        assert!(g.is_replay(&Record::session("nas", "S9", 0, Some(t), None)));
        assert!(!g.is_replay(&Record::session("nas", "S9", 0, Some(t + 20), None)));
        // Untimed resets cannot be placed: never replays.
        assert!(!g.is_replay(&Record::reset("nas", None)));
    }

    #[test]
    fn sessions_are_forgotten_past_the_window_and_bounded() {
        let now = 1_800_000_000;
        let mut g = ReplayGuard::new(3600, 3);
        let r = |s: &str| Record::session("nas", s, 0, Some(now as u32), None);
        g.stored(&r("a"), now);
        g.stored(&r("b"), now);
        // Full (one NAS and two sessions): a third session is not tracked.
        g.stored(&r("c"), now);
        assert_eq!((g.len(), g.untracked), (2, 1));
        assert!(!g.is_replay(&r("c")));
        // Past the window (and a sweep), both are forgotten.
        g.stored(&r("d"), now + 3601);
        assert_eq!(g.len(), 1);
        assert!(!g.is_replay(&r("a")));
    }
}
