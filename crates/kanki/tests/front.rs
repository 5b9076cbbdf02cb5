//! The DNS front of a running `kanki serve`, asked with `dig` from
//! different 127.0.0.x source addresses, forwarding to a real Unbound
//! (which serves a private root zone, so nothing leaves the machine)
//! behind an upstream that never answers.
//!
//! Debian packages (scripts/test.sh installs them): unbound, bind9-dnsutils.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::resolvers::{
    Dig, dig, metric, unbound_with_root_zone, validating_unbound_with_signed_root,
};
use common::{Env, eventually, free_port};

/// Asks the front listening on 127.0.0.1:`port` with dig from the source
/// address `from`; `args` are dig's (the name, the type, flags).
fn ask_front(port: u16, from: &str, args: &[&str]) -> Dig {
    let p = port.to_string();
    let mut all = vec!["-b", from, "-p", &p, "@127.0.0.1"];
    all.extend_from_slice(args);
    dig(&all)
}

/// Whether the first record of an answer is an A record of `address`
/// (whatever its TTL).
fn first_a_is(d: &Dig, address: &str) -> bool {
    let a = format!("IN A {address}");
    d.answer.first().is_some_and(|l| l.ends_with(&a))
}

fn assert_first_a(d: &Dig, address: &str) {
    assert!(first_a_is(d, address), "{}", d.text);
}

#[test]
fn consenting_subscribers_are_warned_others_get_the_upstream_answer() {
    let dns_port = free_port();
    let unbound_port = free_port();
    // Nothing listens here: the front must fail over to Unbound.
    let dead_port = free_port();
    let page_port = free_port();
    let env = Env::new(&format!(
        r#"
[dns]
listen = ["127.0.0.1:{dns_port}"]
upstreams = ["127.0.0.1:{dead_port}", "127.0.0.1:{unbound_port}"]
upstream_timeout = "300ms"
clients = ["127.0.0.1/32", "127.0.0.2/32", "127.0.0.3/32"]
warning_v4 = "192.0.2.80"
warning_v6 = "2001:db8::80"
query_log = "{log}"

[warning]
listen = "127.0.0.1:{page_port}"
"#,
        log = std::env::temp_dir()
            .join(format!("kanki-front-test-{dns_port}.log"))
            .display()
    ));
    let dir = env.dir.path();
    // Unbound, authoritative for a private root zone.
    let _unbound = unbound_with_root_zone(
        dir,
        unbound_port,
        "bad.example. A 10.0.0.1\nwww.bad.example. A 10.0.0.1\n\
         www.bad.example. AAAA 2001:db8::1\nclean.example. A 10.0.0.9\n",
    );

    // S1 (127.0.0.1) consents, S2 (127.0.0.2) does not; 127.0.0.3 is
    // nobody's. bad.example is listed.
    env.two_subscribers_and_a_listed_name();
    let _kanki = env.serve();
    let api = env.api.clone();
    let ask = |from: &str, name: &str, t: &str, tcp: bool| {
        let args = [name, t, "+tcp"];
        ask_front(dns_port, from, &args[..if tcp { 3 } else { 2 }])
    };
    eventually(10, "Unbound answering through the front", || {
        ask("127.0.0.3", "clean.example", "A", false).answer == ["clean.example. 300 IN A 10.0.0.9"]
    });

    // The consenting subscriber: the warning address for the listed name
    // and a subdomain, with EDE 17 carrying the indicator and the page.
    let warned = ask("127.0.0.1", "www.bad.example", "A", false);
    assert_eq!(
        warned.answer,
        ["www.bad.example. 60 IN A 192.0.2.80"],
        "{}",
        warned.text
    );
    assert!(
        warned.text.contains("EDE: 17 (Filtered)"),
        "{}",
        warned.text
    );
    assert!(
        warned.text.contains("indicator") && warned.text.contains("http://www.bad.example/"),
        "{}",
        warned.text
    );
    assert_eq!(
        ask("127.0.0.1", "www.bad.example", "AAAA", false).answer,
        ["www.bad.example. 60 IN AAAA 2001:db8::80"]
    );
    // Other types: NODATA. Over TCP: the same warning.
    let mx = ask("127.0.0.1", "bad.example", "MX", false);
    assert!(
        mx.status == "NOERROR" && mx.answer.is_empty(),
        "{}",
        mx.text
    );
    assert_eq!(
        ask("127.0.0.1", "bad.example", "A", true).answer,
        ["bad.example. 60 IN A 192.0.2.80"]
    );
    // Not listed: the upstream's answer (through the failover), also to S1.
    assert_eq!(
        ask("127.0.0.1", "clean.example", "A", true).answer,
        ["clean.example. 300 IN A 10.0.0.9"]
    );
    // The non-consenting subscriber and the unknown address: the
    // upstream's answer, never the warning (the cache holds no policy
    // answer).
    for from in ["127.0.0.2", "127.0.0.3"] {
        let a = ask(from, "www.bad.example", "A", false);
        assert_eq!(a.answer.len(), 1, "{}", a.text);
        assert_first_a(&a, "10.0.0.1");
    }
    // Outside dns.clients: REFUSED.
    assert_eq!(
        ask("127.0.0.4", "clean.example", "A", false).status,
        "REFUSED"
    );
    assert!(metric(&api, "kanki_dns_policy_hits_total") >= 3.0);
    assert!(metric(&api, "kanki_dns_refused_total") >= 1.0);
    assert!(metric(&api, "kanki_dns_cache_hits_total") >= 1.0);

    // The debugging query log, turned on here: one line per query, by day.
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let log = std::env::temp_dir().join(format!("kanki-front-test-{dns_port}.log.{day}"));
    eventually(5, "the query log written", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.contains("127.0.0.1 www.bad.example. 1 warning")
            && text.contains("127.0.0.2 www.bad.example. 1 forwarded")
    });
    let _ = fs::remove_file(&log);

    // Proceed once on the warning page (reached as the browser would after
    // the warning answer): from then on S1 gets the upstream's answer for
    // that name, and only S1.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let browser = reqwest::blocking::Client::builder()
        .local_address("127.0.0.1".parse::<std::net::IpAddr>().unwrap())
        .resolve(
            "www.bad.example",
            format!("127.0.0.1:{page_port}").parse().unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = format!("http://www.bad.example:{page_port}");
    let html = browser
        .get(format!("{origin}/download"))
        .header("Accept-Language", "en")
        .send()
        .unwrap()
        .text()
        .unwrap();
    let at = html.find("name=\"token\"").expect("a proceed form");
    let value = &html[at..];
    let value = &value[value.find("value=\"").unwrap() + 7..];
    let token = &value[..value.find('"').unwrap()];
    let r = browser
        .post(format!("{origin}/_kanki/proceed"))
        .header("Origin", &origin)
        .form(&[("path", "/download"), ("token", token), ("lang", "en")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_first_a(&ask("127.0.0.1", "www.bad.example", "A", false), "10.0.0.1");
    // Another listed name (the parent) is still warned.
    assert_eq!(
        ask("127.0.0.1", "bad.example", "A", false).answer,
        ["bad.example. 60 IN A 192.0.2.80"]
    );

    // A revocation reaches the front within a second.
    let revoked = Instant::now();
    env.ok(&["consent", "revoke", "S1", "--channel", "phone"]);
    loop {
        if first_a_is(&ask("127.0.0.1", "bad.example", "A", false), "10.0.0.1") {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1) + Duration::from_millis(500),
            "S1 still warned {:?} after the revocation (the CLI took part of it)",
            revoked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A query with CD (checking disabled) asks the upstream for data it has
/// not validated. That answer goes to the client that asked for it and to
/// no one else: a subscriber who then asks normally gets the validating
/// upstream's SERVFAIL, never the forged address. The upstream is a
/// validating Unbound whose signed private root holds a record altered
/// after signing.
#[test]
fn an_unvalidated_answer_to_a_cd_query_is_never_served_to_another_client() {
    let dns_port = free_port();
    let unbound_port = free_port();
    let env = Env::new(&format!(
        r#"
[dns]
listen = ["127.0.0.1:{dns_port}"]
upstreams = ["127.0.0.1:{unbound_port}"]
clients = ["127.0.0.0/8"]
"#
    ));
    let _unbound = validating_unbound_with_signed_root(
        env.dir.path(),
        unbound_port,
        "good.example. A 10.0.0.1\nforged.example. A 10.0.0.66\n",
        &[("10.0.0.66", "10.6.6.6")],
    );
    let _kanki = env.serve();
    let ask = |from: &str, args: &[&str]| ask_front(dns_port, from, args);
    eventually(
        10,
        "the validating upstream answering through the front",
        || ask("127.0.0.3", &["good.example", "A"]).answer == ["good.example. 300 IN A 10.0.0.1"],
    );

    // The attacker's client asks with CD and gets the forged record (as
    // it asked to: no validation).
    assert_first_a(
        &ask("127.0.0.2", &["+cdflag", "forged.example", "A"]),
        "10.6.6.6",
    );
    // Everyone else asks normally: the upstream validates and refuses.
    for _ in 0..2 {
        let plain = ask("127.0.0.3", &["forged.example", "A"]);
        assert_eq!(plain.status, "SERVFAIL", "{}", plain.text);
        assert!(plain.answer.is_empty(), "{}", plain.text);
    }
    // The same holds without EDNS (dig +noedns), and for a recursion-less
    // query followed by an ordinary one.
    assert_first_a(
        &ask("127.0.0.2", &["+cdflag", "+noedns", "forged.example", "A"]),
        "10.6.6.6",
    );
    assert_eq!(
        ask("127.0.0.3", &["+noedns", "forged.example", "A"]).status,
        "SERVFAIL"
    );
    let _ = ask("127.0.0.2", &["+norecurse", "good.example", "A"]);
    assert_first_a(&ask("127.0.0.3", &["good.example", "A"]), "10.0.0.1");
}
