//! The RPZ primary with the real resolvers, everything on loopback ports:
//!
//! * BIND 9 and Unbound as secondaries of `kanki serve`: the first pull is
//!   an AXFR, a list change reaches them by NOTIFY then IXFR (BIND within
//!   10 s, no restart), BIND's transfers need the TSIG key, a wrong key is
//!   refused; BIND also runs a shadow zone and a client-scope zone;
//! * PowerDNS Recursor and Knot Resolver load the exported zone file and
//!   answer policy queries as configured.
//!
//! Debian packages (scripts/test.sh installs them): bind9, bind9-dnsutils
//! (dig), unbound, pdns-recursor, knot-resolver. A missing one fails the
//! test and names the package.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::resolvers::{ask, dig, metric, spawn};
use common::{Env, client, eventually, free_port, need};

const SECRET: &str = "a2Fua2ktcnB6LXRlc3Qtc2VjcmV0LWtleS0zMmJ5dGVzIQ==";
const WRONG: &str = "d3Jvbmctc2VjcmV0LWtleS1mb3ItdGhlLXRlc3QtMzJiIQ==";

/// A private root zone, so that no resolver here ever asks anyone else.
const ROOT_ZONE: &str = "\
$TTL 60
. IN SOA localhost. hostmaster.localhost. 1 300 60 604800 60
. IN NS localhost.
localhost. A 127.0.0.1
bad.example. A 10.0.0.1
new.example. A 10.0.0.2
phish.example. A 10.0.0.3
clean.example. A 10.0.0.9
";

fn add(api: &str, value: &str, category: &str) {
    let r = client()
        .post(format!("{api}/api/v1/indicators"))
        .json(&serde_json::json!({ "value": value, "category": category }))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "adding {value}: {}", r.status());
}

#[test]
fn bind_and_unbound_follow_the_primary_by_axfr_notify_and_ixfr() {
    let named_bin = need("named", "bind9");
    let unbound_bin = need("unbound", "unbound");
    let rpz_port = free_port();
    let bind_port = free_port();
    let unbound_port = free_port();
    let env = Env::new(&format!(
        r#"
[rpz]
listen = "127.0.0.1:{rpz_port}"
notify_interval = "1s"

[[rpz.zones]]
name = "malware.rpz.kanki"
categories = ["malware-distribution", "other"]
notify = ["127.0.0.1:{bind_port}"]
allow_transfer = ["127.0.0.1/32"]
tsig_key = "kanki-key"

[[rpz.zones]]
name = "shadow.rpz.kanki"
categories = ["phishing"]
shadow = true
notify = ["127.0.0.1:{bind_port}"]
tsig_key = "kanki-key"

[[rpz.zones]]
name = "consent.rpz.kanki"
client_scope = ["127.0.0.0/8"]
notify = ["127.0.0.1:{bind_port}"]
tsig_key = "kanki-key"

[[rpz.zones]]
name = "open.rpz.kanki"
action = "nodata"
notify = ["127.0.0.1:{unbound_port}"]

[[rpz.tsig]]
name = "kanki-key"
algorithm = "hmac-sha256"
secret = "{SECRET}"
"#
    ));
    // Client scope from the subscriber directory: S1 (127.0.0.1, static)
    // consents, S2 (127.0.0.2) not yet.
    env.two_subscribers_and_a_listed_name();
    let kanki = env.serve();
    let api = env.api.clone();
    let dir = env.dir.path();

    // The primary itself: TSIG needed, wrong key refused, right key served.
    let p = rpz_port.to_string();
    let unsigned = dig(&["+tcp", "-p", &p, "@127.0.0.1", "malware.rpz.kanki", "AXFR"]);
    assert!(
        unsigned.text.contains("Transfer failed"),
        "{}",
        unsigned.text
    );
    let wrong = dig(&[
        "-y",
        &format!("hmac-sha256:kanki-key:{WRONG}"),
        "+tcp",
        "-p",
        &p,
        "@127.0.0.1",
        "malware.rpz.kanki",
        "AXFR",
    ]);
    assert!(wrong.text.contains("BADSIG"), "{}", wrong.text);
    let right = dig(&[
        "-y",
        &format!("hmac-sha256:kanki-key:{SECRET}"),
        "+tcp",
        "-p",
        &p,
        "@127.0.0.1",
        "malware.rpz.kanki",
        "AXFR",
    ]);
    assert!(
        right
            .answer
            .iter()
            .any(|l| l.starts_with("bad.example.malware.rpz.kanki. 300 IN CNAME .")),
        "{}",
        right.text
    );
    assert!(!right.text.contains("Couldn't verify"), "{}", right.text);
    assert!(metric(&api, "kanki_rpz_tsig_failed_total") >= 1.0);
    assert!(metric(&api, "kanki_rpz_tsig_required_total") >= 1.0);

    // BIND 9 as a secondary of three zones, the client-scope zone first.
    let root = dir.join("root.zone");
    fs::write(&root, ROOT_ZONE).unwrap();
    let bind_dir = dir.join("bind");
    fs::create_dir_all(&bind_dir).unwrap();
    let secondary = |zone: &str| {
        format!(
            "zone \"{zone}\" {{ type secondary; primaries {{ 127.0.0.1 port {rpz_port} key kanki-key; }}; \
             file \"{d}/{zone}.db\"; }};\n",
            d = bind_dir.display()
        )
    };
    let conf = format!(
        "key \"kanki-key\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
         options {{\n  directory \"{d}\";\n  listen-on port {bind_port} {{ 127.0.0.1; }};\n  \
         listen-on-v6 {{ none; }};\n  pid-file none;\n  session-keyfile \"{d}/session.key\";\n  \
         managed-keys-directory \"{d}\";\n  recursion yes;\n  allow-query {{ 127.0.0.0/8; }};\n  \
         allow-recursion {{ 127.0.0.0/8; }};\n  dnssec-validation no;\n  notify no;\n  \
         allow-notify {{ 127.0.0.1; }};\n  \
         response-policy {{ zone \"consent.rpz.kanki\" log no; zone \"malware.rpz.kanki\"; zone \"shadow.rpz.kanki\"; }} \
         qname-wait-recurse no min-update-interval 0;\n}};\ncontrols {{ }};\n\
         logging {{ category xfer-in {{ default_stderr; }}; category notify {{ default_stderr; }}; category rpz {{ default_stderr; }}; }};\n\
         zone \".\" {{ type primary; file \"{root}\"; }};\n{}{}{}",
        secondary("consent.rpz.kanki"),
        secondary("malware.rpz.kanki"),
        secondary("shadow.rpz.kanki"),
        d = bind_dir.display(),
        root = root.display(),
    );
    let conf_path = bind_dir.join("named.conf");
    fs::write(&conf_path, conf).unwrap();
    let named = spawn(
        "named",
        dir,
        Command::new(&named_bin)
            .args(["-g", "-n", "1", "-c"])
            .arg(&conf_path),
    );

    // Unbound, secondary of the unsigned zone (Debian 12's Unbound 1.17 has
    // no TSIG for transfers), forwarding everything else to BIND.
    let ub_dir = dir.join("unbound");
    fs::create_dir_all(&ub_dir).unwrap();
    let ub_conf = ub_dir.join("unbound.conf");
    fs::write(
        &ub_conf,
        format!(
            "server:\n  interface: 127.0.0.1\n  port: {unbound_port}\n  do-daemonize: no\n  \
             use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  \
             pidfile: \"{d}/unbound.pid\"\n  module-config: \"respip iterator\"\n  \
             access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  verbosity: 2\n\
             forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@{bind_port}\n\
             rpz:\n  name: \"open.rpz.kanki\"\n  primary: 127.0.0.1@{rpz_port}\n  \
             allow-notify: 127.0.0.1\n  zonefile: \"{d}/open.rpz.kanki.zone\"\n  rpz-log: yes\n  rpz-log-name: \"kanki\"\n",
            d = ub_dir.display()
        ),
    )
    .unwrap();
    let unbound = spawn(
        "unbound",
        dir,
        Command::new(&unbound_bin).arg("-d").arg("-c").arg(&ub_conf),
    );

    // First pull: AXFR. Consenting client 127.0.0.1 is blocked.
    eventually(30, "BIND enforcing the first AXFR", || {
        ask(bind_port, "bad.example").status == "NXDOMAIN"
    });
    assert!(
        named.log().contains("Transfer status: success"),
        "{}",
        named.log()
    );
    eventually(30, "Unbound enforcing the first AXFR", || {
        let a = ask(unbound_port, "bad.example");
        a.status == "NOERROR" && a.answer.is_empty()
    });
    assert_eq!(
        ask(bind_port, "clean.example").answer,
        ["clean.example. 60 IN A 10.0.0.9"]
    );
    // The AXFR above, BIND's three zones and Unbound's.
    eventually(10, "five AXFRs counted", || {
        metric(&api, "kanki_rpz_axfr_total") >= 5.0
    });

    // Client scope: 127.0.0.2 has not consented: unmodified answers.
    let other = dig(&[
        "-b",
        "127.0.0.2",
        "-p",
        &bind_port.to_string(),
        "@127.0.0.1",
        "bad.example",
        "A",
    ]);
    assert_eq!(
        other.answer,
        ["bad.example. 60 IN A 10.0.0.1"],
        "{}",
        other.text
    );

    // A change reaches BIND by NOTIFY and IXFR within 10 s, no restart.
    let changed = Instant::now();
    add(&api, "new.example", "malware-distribution");
    add(&api, "phish.example", "phishing");
    eventually(10, "BIND blocking new.example", || {
        ask(bind_port, "new.example").status == "NXDOMAIN"
    });
    let took = changed.elapsed();
    eprintln!("list change to BIND's answer: {took:?}");
    eventually(10, "Unbound blocking new.example", || {
        let a = ask(unbound_port, "new.example");
        a.status == "NOERROR" && a.answer.is_empty()
    });
    // Shadow zone: the phishing name is logged, not blocked.
    eventually(10, "BIND logging the shadow hit, not blocking it", || {
        assert_eq!(
            ask(bind_port, "phish.example").answer,
            ["phish.example. 60 IN A 10.0.0.3"]
        );
        named
            .log()
            .contains("rpz QNAME PASSTHRU rewrite phish.example")
    });
    assert!(metric(&api, "kanki_rpz_ixfr_total") >= 1.0, "no IXFR asked");
    assert!(
        metric(&api, "kanki_rpz_notify_acked_total") >= 2.0,
        "NOTIFY not answered"
    );
    let blog = named.log();
    assert!(
        blog.contains("received notify for zone 'malware.rpz.kanki'")
            || blog.contains("notify from 127.0.0.1"),
        "{blog}"
    );
    let ulog = unbound.log();
    assert!(
        ulog.contains("rpz: applied [kanki]") || ulog.contains("kanki"),
        "{ulog}"
    );

    // Consent given, then revoked: the client scope follows the directory
    // and BIND gets it by NOTIFY and IXFR.
    let from_127_0_0_2 = || {
        dig(&[
            "-b",
            "127.0.0.2",
            "-p",
            &bind_port.to_string(),
            "@127.0.0.1",
            "bad.example",
            "A",
        ])
        .status
    };
    env.ok(&["consent", "grant", "S2", "--channel", "web"]);
    eventually(15, "127.0.0.2 blocked after consenting", || {
        from_127_0_0_2() == "NXDOMAIN"
    });
    env.ok(&["consent", "revoke", "S2", "--channel", "phone"]);
    eventually(15, "127.0.0.2 answered unmodified after revoking", || {
        from_127_0_0_2() == "NOERROR"
    });

    // A restart keeps the journal: IXFR from the first serial still works.
    let soa = dig(&[
        "-y",
        &format!("hmac-sha256:kanki-key:{SECRET}"),
        "-p",
        &p,
        "@127.0.0.1",
        "malware.rpz.kanki",
        "SOA",
        "+short",
    ]);
    let serial: u32 = soa.answer[0].split(' ').nth(2).unwrap().parse().unwrap();
    drop(kanki);
    let _kanki = env.serve();
    let ixfr = dig(&[
        "-y",
        &format!("hmac-sha256:kanki-key:{SECRET}"),
        "+tcp",
        "-p",
        &p,
        "@127.0.0.1",
        "malware.rpz.kanki",
        &format!("IXFR={}", serial - 1),
    ]);
    let soas = ixfr.answer.iter().filter(|l| l.contains(" SOA ")).count();
    let _ = serial;
    assert!(
        ixfr.text.contains("new.example.malware.rpz.kanki"),
        "{}",
        ixfr.text
    );
    assert!(soas >= 2, "{}", ixfr.text);

    // The dashboard shows the zone's serial and this transfer.
    let d: serde_json::Value = client()
        .get(format!("{api}/api/v1/dashboard"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let zone = d["rpz"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"].as_str().unwrap().trim_end_matches('.') == "malware.rpz.kanki")
        .unwrap_or_else(|| panic!("no zone in {d}"))
        .clone();
    let me = zone["secondaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "127.0.0.1")
        .unwrap_or_else(|| panic!("no secondary in {zone}"))
        .clone();
    // (After the restart the primary answers this IXFR with the full zone:
    // the dashboard says which it was.)
    assert!(me["kind"] == "ixfr" || me["kind"] == "ixfr-full", "{zone}");
    assert_eq!(me["had"].as_u64(), Some(u64::from(serial - 1)), "{zone}");
    assert_eq!(me["given"], zone["serial"], "{zone}");
    assert_eq!(me["behind"], false, "{zone}");
    drop(unbound);
}

#[test]
fn powerdns_and_knot_enforce_the_exported_zone() {
    let pdns = need("pdns_recursor", "pdns-recursor");
    let kresd = need("kresd", "knot-resolver");
    let env = Env::new("[export.rpz]\naction = \"nxdomain\"\n");
    let list = env.dir.path().join("list.txt");
    fs::write(&list, "bad.example\n").unwrap();
    env.ok(&["import", "--format", "plain", list.to_str().unwrap()]);
    let zone = env.dir.path().join("kanki.rpz");
    env.ok(&[
        "export",
        "--format",
        "rpz",
        "--output",
        zone.to_str().unwrap(),
    ]);
    let dir = env.dir.path();
    let dead = free_port(); // nothing listens: unlisted names fail, nothing leaves the machine

    let pdns_port = free_port();
    let lua = dir.join("pdns.lua");
    fs::write(
        &lua,
        format!(
            "rpzFile(\"{}\", {{policyName=\"kanki\"}})\n",
            zone.display()
        ),
    )
    .unwrap();
    let pdns_dir = dir.join("pdns");
    fs::create_dir_all(&pdns_dir).unwrap();
    let pdns_proc = spawn(
        "pdns_recursor",
        dir,
        Command::new(&pdns).args([
            &format!("--local-address=127.0.0.1:{pdns_port}"),
            &format!("--lua-config-file={}", lua.display()),
            &format!("--socket-dir={}", pdns_dir.display()),
            &format!("--forward-zones=.=127.0.0.1:{dead}"),
            "--daemon=no",
            "--write-pid=no",
            "--disable-syslog",
            "--loglevel=6",
            "--config-dir=/nonexistent",
            "--setuid=",
            "--setgid=",
            "--threads=1",
        ]),
    );
    eventually(20, "PowerDNS Recursor blocking bad.example", || {
        ask(pdns_port, "bad.example").status == "NXDOMAIN"
    });
    assert_eq!(ask(pdns_port, "www.bad.example").status, "NXDOMAIN");
    assert_ne!(ask(pdns_port, "clean.example").status, "NXDOMAIN");
    drop(pdns_proc);

    let knot_port = free_port();
    let kdir = dir.join("knot");
    fs::create_dir_all(&kdir).unwrap();
    let kconf = kdir.join("kresd.conf");
    fs::write(
        &kconf,
        format!(
            "net.listen('127.0.0.1', {knot_port}, {{ kind = 'dns' }})\n\
             modules.load('policy')\n\
             policy.add(policy.rpz(policy.DENY, '{zone}', false))\n\
             policy.add(policy.all(policy.FORWARD('127.0.0.1@{dead}')))\n",
            zone = zone.display()
        ),
    )
    .unwrap();
    let _knot = spawn(
        "kresd",
        dir,
        Command::new(&kresd)
            .args(["-n", "-c"])
            .arg(&kconf)
            .arg(&kdir),
    );
    eventually(20, "Knot Resolver blocking bad.example", || {
        ask(knot_port, "bad.example").status == "NXDOMAIN"
    });
    assert_eq!(ask(knot_port, "www.bad.example").status, "NXDOMAIN");
    assert_ne!(ask(knot_port, "clean.example").status, "NXDOMAIN");
    let _ = Duration::ZERO;
}
