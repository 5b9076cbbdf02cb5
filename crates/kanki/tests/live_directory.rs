//! The subscriber directory is live: a binding change stored by `kanki
//! serve` (a RADIUS Start or Stop from FreeRADIUS's `radclient`, a lease
//! appended to a Kea lease file that serve follows) changes the DNS front's
//! answers, asked with `dig`, without waiting for the index to be rebuilt
//! (`rebuild_every` is an hour here: only the overlay of changes can carry
//! them). The front forwards to a real Unbound serving a private root zone.
//!
//! The 1 s bound itself is measured by `kanki bench directory` (see
//! docs/benchmarks.md); here the time each change took to show is printed.
//!
//! Debian packages (scripts/test.sh installs them): freeradius-utils,
//! unbound, bind9-dnsutils.

mod common;

use std::io::Write;
use std::time::Instant;

use common::resolvers::{dig, metric, unbound_with_root_zone};
use common::{Env, client, eventually, free_port, radclient};
use serde_json::{Value, json};

/// An Accounting-Request of `user`'s session `session` on `address`, now.
fn acct(status: &str, user: &str, session: &str, address: &str) -> String {
    acct_ago(status, user, session, address, 0)
}

/// The same, `secs` seconds ago by the NAS's clock.
fn acct_ago(status: &str, user: &str, session: &str, address: &str, secs: i64) -> String {
    format!(
        "Acct-Status-Type = {status}\nUser-Name = \"{user}\"\nAcct-Session-Id = \"{session}\"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = {address}\nEvent-Timestamp = {}\n",
        chrono::Utc::now().timestamp() - secs
    )
}

/// A running serve with the DNS front (clients 127.0.0.0/24), RADIUS
/// accounting, and Unbound behind it; S1 consents, S2 does not; bad.example
/// is listed.
struct Live {
    env: Env,
    _unbound: common::resolvers::Proc,
    server: Option<common::Server>,
    dns: u16,
    radius: u16,
}

impl Live {
    fn start(extra: &str) -> Live {
        Live::start_with("rebuild_every = \"1h\"\nrefresh_every = \"100ms\"", extra)
    }

    /// With `directory`, the `[directory]` table's keys.
    fn start_with(directory: &str, extra: &str) -> Live {
        let (dns, unbound, radius) = (free_port(), free_port(), free_port());
        let env = Env::new(&format!(
            r#"
[dns]
listen = ["127.0.0.1:{dns}"]
upstreams = ["127.0.0.1:{unbound}"]
clients = ["127.0.0.0/24"]
warning_v4 = "192.0.2.80"

[directory]
{directory}

[radius]
listen = "127.0.0.1:{radius}"

[[radius.nas]]
address = "127.0.0.1"
secret = "testing123"
{extra}"#
        ));
        let unbound = unbound_with_root_zone(
            env.dir.path(),
            unbound,
            "bad.example. A 10.0.0.1\nclean.example. A 10.0.0.9\n",
        );
        let subs = env.dir.path().join("subs.csv");
        std::fs::write(
            &subs,
            "id,email,language,consent,client_ids\nS1,,ja,yes,01:00:16:3e:5a:10:01\nS2,,en,no,01:00:16:3e:5a:10:02\n",
        )
        .unwrap();
        env.ok(&["subscribers", "import", subs.to_str().unwrap()]);
        let list = env.dir.path().join("list.txt");
        std::fs::write(&list, "bad.example\n").unwrap();
        env.ok(&["import", "--format", "plain", list.to_str().unwrap()]);
        let server = env.serve();
        let live = Live {
            env,
            _unbound: unbound,
            server: Some(server),
            dns,
            radius,
        };
        eventually(10, "Unbound answering through the front", || {
            live.bad_example_from("127.0.0.99") == Answer::Upstream
        });
        live
    }

    fn api(&self) -> &str {
        &self.env.api
    }

    /// What `from` is answered for bad.example.
    fn bad_example_from(&self, from: &str) -> Answer {
        let d = dig(&[
            "-b",
            from,
            "-p",
            &self.dns.to_string(),
            "@127.0.0.1",
            "bad.example",
            "A",
        ]);
        match d.answer.as_slice() {
            [a] if a.ends_with("IN A 192.0.2.80") => Answer::Warning,
            [a] if a.ends_with("IN A 10.0.0.1") => Answer::Upstream,
            _ => Answer::Other(d.text),
        }
    }

    /// Waits (up to a generous deadline) for `from` to be answered `want`;
    /// prints how long it took since `since`.
    fn until(&self, from: &str, want: Answer, since: Instant, what: &str) {
        eventually(10, what, || self.bad_example_from(from) == want);
        eprintln!("{what}: {} ms", since.elapsed().as_millis());
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    Warning,
    Upstream,
    Other(String),
}

fn who(api: &str, address: &str) -> Value {
    let r = client()
        .post(format!("{api}/api/v1/who"))
        .json(&json!({
            "address": address,
            "at": chrono::Utc::now(),
            "ground": "legitimate-business",
            "program": "OP25B",
            "purpose": "outbound SMTP from a dynamic address",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn an_address_moving_by_radius_changes_the_dns_answers_at_once() {
    let live = Live::start("");
    let me = "127.0.0.5";
    // Nobody's yet: the upstream's answer.
    assert_eq!(live.bad_example_from(me), Answer::Upstream);

    // S1, who consents, connects: warned, without an index rebuild.
    radclient(live.radius, &acct("Start", "S1", "s1-a", me));
    let stored = Instant::now();
    live.until(
        me,
        Answer::Warning,
        stored,
        "S1's Start reached the DNS front",
    );
    assert_eq!(who(live.api(), me)["subscriber"], "S1");

    // S1 disconnects and the address goes to S2, who never consented: from
    // then on S2 gets the upstream's answer, every time.
    radclient(live.radius, &acct("Stop", "S1", "s1-a", me));
    radclient(live.radius, &acct("Start", "S2", "s2-a", me));
    let stored = Instant::now();
    live.until(
        me,
        Answer::Upstream,
        stored,
        "the Stop and S2's Start reached the DNS front",
    );
    for _ in 0..5 {
        assert_eq!(live.bad_example_from(me), Answer::Upstream);
    }
    // Attribution of this moment is another question: within the clock
    // skew of S1's Stop, both are possible holders.
    let w = who(live.api(), me);
    assert_eq!(w["confidence"], "ambiguous", "{w}");
    let holders: Vec<&str> = w["holders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["subscriber"].as_str())
        .collect();
    assert_eq!(holders, ["S1", "S2"], "{w}");

    // The same from another process: `kanki bindings import` stores a static
    // assignment of another address to S1, and the running serve follows.
    let other = "127.0.0.6";
    let st = live.env.dir.path().join("static.csv");
    std::fs::write(
        &st,
        format!("subscriber,prefix,from,to\nS1,{other}/32,2020-01-01T00:00:00Z,\n"),
    )
    .unwrap();
    live.env.ok(&[
        "bindings",
        "import",
        "--format",
        "static",
        st.to_str().unwrap(),
    ]);
    let stored = Instant::now();
    live.until(
        other,
        Answer::Warning,
        stored,
        "another process's import reached the DNS front",
    );

    // A Stop of a session never started is stored and counted.
    radclient(
        live.radius,
        &acct("Stop", "S2", "never-started", "127.0.0.7"),
    );
    eventually(5, "the stop without a start counted", || {
        metric(
            live.api(),
            "kanki_directory_events_total{event=\"radius: stop without start\"}",
        ) >= 1.0
    });
    // Nobody holds 127.0.0.7 now: that session is over.
    assert_eq!(live.bad_example_from("127.0.0.7"), Answer::Upstream);
}

#[test]
fn overlapping_sessions_the_newest_start_decides_and_the_overlap_is_counted() {
    let live = Live::start("");
    let me = "127.0.0.8";
    radclient(live.radius, &acct_ago("Start", "S2", "s2-b", me, 600));
    // S2 holds it (the upstream's answer), as the directory says.
    eventually(10, "S2's session in the directory", || {
        who(live.api(), me)["subscriber"] == "S2"
    });
    assert_eq!(live.bad_example_from(me), Answer::Upstream);

    // S1's Start arrives before S2's Stop: the newest Start decides.
    radclient(live.radius, &acct("Start", "S1", "s1-b", me));
    let stored = Instant::now();
    live.until(me, Answer::Warning, stored, "the newer Start decided");
    eventually(5, "the overlap counted", || {
        metric(
            live.api(),
            "kanki_directory_events_total{event=\"overlap\"}",
        ) >= 1.0
    });
    // S2's late Stop changes nothing for S1.
    radclient(live.radius, &acct("Stop", "S2", "s2-b", me));
    eventually(5, "S2's Stop in the directory", || {
        who(live.api(), me)["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["subscriber"] == "S2" && !h["binding"]["to"].is_null())
    });
    assert_eq!(live.bad_example_from(me), Answer::Warning);
}

const KEA4: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n";

/// A Kea v4 lease of `address` to S1's (`n` = 1) or S2's device, from now
/// for an hour.
fn lease(address: &str, n: u8) -> String {
    let expire = chrono::Utc::now().timestamp() + 3600;
    format!(
        "{address},00:16:3e:5a:10:{n:02x},01:00:16:3e:5a:10:{n:02x},3600,{expire},1,0,0,pc,0,,0\n"
    )
}

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn serve_follows_a_kea_lease_file_through_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("kea-leases4.csv");
    append(&leases, KEA4);
    let mut live = Live::start(&format!(
        "\n[[directory.follow]]\nformat = \"kea\"\npath = \"{}\"\nevery = \"100ms\"\n",
        leases.display()
    ));

    // A lease appended for S1's device: warned, and attributed.
    append(&leases, &lease("127.0.0.10", 1));
    let stored = Instant::now();
    live.until(
        "127.0.0.10",
        Answer::Warning,
        stored,
        "a Kea lease reached the DNS front",
    );
    assert_eq!(who(live.api(), "127.0.0.10")["subscriber"], "S1");

    // Kea's cleanup rotates the file, the old one cut mid-line; the new
    // file's leases are followed.
    append(&leases, &lease("127.0.0.11", 1)[..25]);
    std::fs::rename(&leases, dir.path().join("kea-leases4.csv.2")).unwrap();
    append(&leases, KEA4);
    append(&leases, &lease("127.0.0.12", 1));
    let stored = Instant::now();
    live.until(
        "127.0.0.12",
        Answer::Warning,
        stored,
        "a lease in the rotated-to file",
    );
    assert_eq!(live.bad_example_from("127.0.0.11"), Answer::Upstream);
    eventually(5, "the cut line counted", || {
        metric(
            live.api(),
            "kanki_directory_events_total{event=\"kea: cut off by rotation\"}",
        ) >= 1.0
    });

    // A restart carries on from the kept position: a lease written while
    // serve was down is followed, and the address S2's device then gets
    // is S2's (the upstream's answer) though S1 held it.
    live.server.take().unwrap().sigterm();
    append(&leases, &lease("127.0.0.13", 1));
    live.server = Some(live.env.serve());
    live.until(
        "127.0.0.13",
        Answer::Warning,
        Instant::now(),
        "a lease written while serve was down",
    );
    append(&leases, &lease("127.0.0.13", 2));
    let stored = Instant::now();
    live.until(
        "127.0.0.13",
        Answer::Upstream,
        stored,
        "the address leased to S2's device",
    );
    let out = live.env.ok(&[
        "who",
        "127.0.0.12",
        "--ground",
        "legitimate-business",
        "--program",
        "OP25B",
        "--purpose",
        "outbound SMTP from a dynamic address",
    ]);
    assert!(out.contains(": S1 ("), "{out}");
}

/// A change made while the index is being rebuilt reaches the DNS front
/// within a second and stays there when the rebuilt index is swapped in.
/// The index is rebuilt back to back (every 100 ms while bindings change)
/// over 50,000 bindings, while other processes change the same bindings
/// over and over (a feed's Starts and Stops: many changes, few bindings),
/// and S1's sessions start and stop by RADIUS meanwhile.
#[test]
fn a_change_made_while_the_index_is_rebuilt_reaches_the_front_within_a_second() {
    let live = Live::start_with(
        "rebuild_every = \"100ms\"\nrefresh_every = \"100ms\"\noverlay_most = 2000",
        "",
    );
    let many = live.env.dir.path().join("many.csv");
    let mut text = String::from("subscriber,prefix,from,to\n");
    for i in 0..50_000u32 {
        let [_, a, b, c] = (0x0a00_0000u32 + i).to_be_bytes();
        text.push_str(&format!("S2,10.{a}.{b}.{c}/32,2020-01-01T00:00:00Z,\n"));
    }
    std::fs::write(&many, text).unwrap();
    live.env.ok(&[
        "bindings",
        "import",
        "--format",
        "static",
        many.to_str().unwrap(),
    ]);

    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the churn however the probes end (a failed probe included).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        // The churn: 100 bindings of the 50,000, each ended at a new moment
        // ten times per import.
        let churn = scope.spawn(|| {
            let path = live.env.dir.path().join("churn.csv");
            let mut round = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut text = String::from("subscriber,prefix,from,to\n");
                for k in 0..10u32 {
                    for i in 0..100u32 {
                        let s = 1 + (round * 10 + k) % 59;
                        text.push_str(&format!(
                            "S2,10.0.0.{i}/32,2020-01-01T00:00:00Z,2031-01-01T00:00:{s:02}Z\n"
                        ));
                    }
                }
                std::fs::write(&path, text).unwrap();
                live.env.ok(&[
                    "bindings",
                    "import",
                    "--format",
                    "static",
                    path.to_str().unwrap(),
                ]);
                round += 1;
            }
            round
        });
        let rebuilt = || {
            metric(
                live.api(),
                "kanki_directory_events_total{event=\"index rebuilt\"}",
            )
        };
        let waited = || {
            metric(
                live.api(),
                "kanki_directory_events_total{event=\"changes wait for a rebuild\"}",
            )
        };
        // The 50,000 bindings imported above are more than the overlay
        // holds (overlay_most), so they waited for a rebuild: count from
        // once that rebuild has taken them in.
        let imported = rebuilt();
        eventually(30, "the bulk import folded into the index", || {
            rebuilt() > imported
        });
        let waited_before = waited();
        let rebuilt_before = rebuilt();
        let stopping = Stop(&stop);
        for round in 0..4 {
            let me = format!("127.0.0.{}", 30 + round);
            let session = format!("s1-r{round}");
            for (status, want) in [("Start", Answer::Warning), ("Stop", Answer::Upstream)] {
                radclient(live.radius, &acct(status, "S1", &session, &me));
                let stored = Instant::now();
                eventually(1, &format!("S1's {status} reached the front"), || {
                    live.bad_example_from(&me) == want
                });
                eprintln!(
                    "{status}, round {round}: {} ms",
                    stored.elapsed().as_millis()
                );
                // And stays: no rebuild swapped in hides it.
                for _ in 0..10 {
                    assert_eq!(live.bad_example_from(&me), want, "{status}, round {round}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        drop(stopping);
        let rounds = churn.join().unwrap();
        assert!(rounds > 0, "the churn ran");
        let rebuilds = rebuilt() - rebuilt_before;
        eprintln!("{rounds} churn imports, {rebuilds} rebuilds meanwhile");
        assert!(
            rebuilds >= 4.0,
            "the index was rebuilt while the changes came ({rebuilds})"
        );
        assert_eq!(
            waited() - waited_before,
            0.0,
            "no change made during the churn waited for a rebuild"
        );
    });
}
