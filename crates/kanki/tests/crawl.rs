//! `kanki crawl` against the lab (kanki_crawler::lab) on 127.0.0.1: every
//! scenario's tree and verdicts, the SSRF guard, cloaking, the limits, and
//! what is stored and listed.

mod common;

use std::time::Duration;

use common::{Env, Smtp, eventually};
use kanki_crawler::lab::{EXPLOIT_MARKER, LabServer, fake_pe};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Whether this kanki has YARA (its default feature `yara`; scripts/test.sh
/// builds without it when KANKI_TEST_YARA=0).
const YARA: bool = cfg!(feature = "yara");

/// A directory with a YARA rule for the lab's exploit kit.
fn lab_rules() -> std::path::PathBuf {
    let rules = tempfile::tempdir().unwrap().keep();
    std::fs::write(
        rules.join("lab.yar"),
        format!("rule lab_kit {{ strings: $a = \"{EXPLOIT_MARKER}\" condition: $a }}\n"),
    )
    .unwrap();
    rules
}

/// A configuration for the lab: its loopback block allowed, short limits,
/// a YARA rule for the lab's exploit kit (with YARA), a name mapped to a
/// private address.
fn lab_env(extra: &str) -> Env {
    let yara_rules = if YARA {
        format!("yara_rules = [\"{}\"]", lab_rules().display())
    } else {
        String::new()
    };
    Env::new(&format!(
        r#"
[crawler]
lab_allow = ["127.0.0.0/8"]
page_timeout = "2s"
crawl_timeout = "30s"
max_body_bytes = 1048576
{yara_rules}
{extra}
[crawler.hosts]
"intranet.lab" = "10.0.0.7"
"#
    ))
}

fn crawl(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["crawl", "--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&env.ok(&a)).unwrap()
}

/// The node of a tree whose URL ends with `suffix`.
fn node<'a>(tree: &'a Value, suffix: &str) -> &'a Value {
    tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["url"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no node {suffix} in {tree:#}"))
}

fn verdict(n: &Value) -> &str {
    n["verdict"].as_str().unwrap()
}

#[test]
fn the_entrance_chain_is_followed_to_the_payload_and_listed() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let reports = crawl(&env, &[&lab.url("/entrance.html")]);
    let r = &reports[0];
    assert_eq!(r["verdict"], "distribution");
    let t = &r["trees"][0];
    assert_eq!(t["profile"], "windows-chrome-ja");

    let entrance = node(t, "/entrance.html");
    assert_eq!(entrance["edge"], "seed");
    assert_eq!(verdict(entrance), "entrance", "{entrance:#}");
    assert_eq!(entrance["fetch"]["status"], 200);
    assert_eq!(entrance["fetch"]["address"], "127.0.0.1");
    assert_eq!(entrance["triage"]["magic"], "html");

    let inject = node(t, "/js/inject.js");
    assert_eq!(inject["edge"], "script");
    assert_eq!(verdict(inject), "redirector");
    // The hidden iframe was written by a script decoded with atob.
    let tds = node(t, "/tds");
    assert_eq!(tds["edge"], "js-write");
    let flags: Vec<&str> = tds["edge_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in ["decoded:atob", "tag:iframe", "hidden", "tiny"] {
        assert!(flags.contains(&f), "{f} missing from {flags:?}");
    }
    // The chain of 302s, each hop recorded.
    for (path, hops) in [("/r1", 1), ("/r2", 2), ("/landing.html", 3)] {
        let n = node(t, path);
        assert_eq!(n["edge"], "http-redirect", "{path}");
        assert_eq!(n["hops"], hops, "{path}");
        // The landing page is an exploit kit by its YARA rule; without
        // YARA it is only seen to send visitors on to the payload.
        assert_eq!(
            verdict(n),
            if path == "/landing.html" && YARA {
                "exploit"
            } else {
                "redirector"
            }
        );
    }
    assert_eq!(node(t, "/tds")["fetch"]["status"], 302);
    let landing = node(t, "/landing.html");
    if YARA {
        assert!(
            landing["triage"]["yara"][0]
                .as_str()
                .unwrap()
                .ends_with("lab_kit")
        );
    }

    let pe = node(t, "/payload/setup.exe");
    assert_eq!(pe["edge"], "js-location");
    assert!(pe["edge_flags"].to_string().contains("String.fromCharCode"));
    assert_eq!(pe["triage"]["magic"], "pe");
    assert_eq!(
        pe["triage"]["sha256"],
        hex_sha256(&fake_pe()),
        "the evidence names the payload's hash"
    );
    assert_eq!(verdict(pe), "distribution");
    assert!(
        pe["fetch"]["headers"]
            .to_string()
            .contains("application/octet-stream")
    );

    // Stored and listed, with the crawl as evidence.
    let crawl_id = r["recorded"]["crawl_id"].as_i64().unwrap();
    let listed = env.ok(&["indicators", "list", "--source", "crawler", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let items = listed["items"].as_array().unwrap();
    let payload = items
        .iter()
        .find(|i| i["value"].as_str().unwrap().ends_with("/payload/setup.exe"))
        .expect("the payload URL is listed");
    assert_eq!(payload["category"], "malware-distribution");
    assert!(items.iter().any(|i| i["category"] == "entrance"));
    assert_eq!(items.iter().any(|i| i["category"] == "exploit"), YARA);
    let shown = env.ok(&["indicators", "show", payload["value"].as_str().unwrap()]);
    assert!(
        shown.contains(&format!("/api/v1/crawls/{crawl_id}#windows-chrome-ja/")),
        "{shown}"
    );
    // The payload itself is kept, named by its hash.
    assert!(
        env.dir
            .path()
            .join("data/evidence")
            .join(hex_sha256(&fake_pe()))
            .exists()
    );

    // The console's indicator page draws the chain that reached it, each
    // edge with its kind, the payload marked.
    let server = env.serve();
    let id = payload["id"].as_i64().unwrap();
    let page = common::client()
        .get(format!("{}/indicators/{id}", server.api))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let chain = page
        .split("id=\"crawl-tree\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no evidence chain: {page}"));
    for edge in [
        "[seed]",
        "[script]",
        "[js-write]",
        "[http-redirect]",
        "[js-location]",
    ] {
        assert!(chain.contains(edge), "{edge} missing: {chain}");
    }
    assert!(chain.contains(&format!("#{crawl_id}")), "{chain}");
    assert_eq!(
        chain.matches("stroke-width=\"3\"").count(),
        1,
        "the payload marked: {chain}"
    );
    assert!(
        chain.contains("<li class=\"marked\">distribution [js-location]"),
        "{chain}"
    );
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn the_text_output_shows_the_tree() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let out = env.ok(&["crawl", "--dry-run", &lab.url("/entrance.html")]);
    assert!(out.contains("verdict: distribution"), "{out}");
    assert!(out.contains("http-redirect"), "{out}");
    assert!(out.contains("=> entrance"), "{out}");
    assert!(!out.contains("stored as crawl"), "{out}");
}

#[test]
fn cloaking_by_user_agent_and_by_referer_is_detected() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let r = &crawl(
        &env,
        &[
            "--profile",
            "windows-chrome-ja",
            "--profile",
            "android-ja",
            &lab.url("/mobile.html"),
        ],
    )[0];
    assert_eq!(r["trees"][0]["verdict"], "clean");
    let android = &r["trees"][1];
    assert_eq!(android["profile"], "android-ja");
    let apk = node(android, "/m/app.apk");
    assert_eq!(apk["triage"]["magic"], "apk");
    assert_eq!(verdict(apk), "distribution");
    let gate = node(android, "/m/gate");
    assert_eq!(gate["edge"], "iframe");
    assert!(gate["edge_flags"].to_string().contains("hidden"));
    let c = &r["cloaking"][0];
    assert_eq!(c["profiles"][1], "android-ja");
    assert_eq!(c["verdicts"][0], "clean");
    assert!(c["only_second"].to_string().contains("/m/app.apk"), "{c}");

    let r = &crawl(
        &env,
        &[
            "--profile",
            "windows-chrome-ja",
            "--profile",
            "search-referer-ja",
            &lab.url("/search.html"),
        ],
    )[0];
    assert_eq!(r["trees"][0]["verdict"], "clean");
    let via_search = &r["trees"][1];
    assert_eq!(
        node(via_search, "/search.html")["referer"],
        "https://www.google.co.jp/"
    );
    let pe = node(via_search, "/payload/setup.exe");
    assert_eq!(pe["edge"], "meta-refresh");
    assert_eq!(verdict(pe), "distribution");
    assert_eq!(r["cloaking"].as_array().unwrap().len(), 1);
}

#[test]
fn plugins_and_auto_submitted_forms_are_edges() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let reports = crawl(&env, &[&lab.url("/applet.html"), &lab.url("/form.html")]);
    let applet = &reports[0]["trees"][0];
    let jar = node(applet, "/java/exploit.jar");
    assert_eq!(jar["edge"], "applet");
    assert_eq!(jar["triage"]["magic"], "jar");
    assert_eq!(verdict(jar), "distribution");
    assert_eq!(verdict(node(applet, "/applet.html")), "exploit");

    let form = &reports[1]["trees"][0];
    let tds = node(form, "/tds");
    assert_eq!(tds["edge"], "form-submit");
    assert!(tds["edge_flags"].to_string().contains("post"));
    assert_eq!(verdict(node(form, "/payload/setup.exe")), "distribution");
}

#[test]
fn bombs_stalls_and_loops_end_at_their_limits_with_the_reason() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let reports = crawl(
        &env,
        &[
            &lab.url("/bomb.html"),
            &lab.url("/slow"),
            &lab.url("/loop/a"),
        ],
    );
    let bomb = &reports[0]["trees"][0];
    let gz = node(bomb, "/bomb/gzip");
    assert!(
        gz["fetch"]["stopped"]
            .as_str()
            .unwrap()
            .contains("body limit of 1048576 bytes"),
        "{gz:#}"
    );
    assert_eq!(gz["fetch"]["size"], 1048576);
    let zip = node(bomb, "/bomb/archive.zip");
    assert!(
        zip["triage"]["notes"]
            .to_string()
            .contains("archive bomb limit"),
        "{zip:#}"
    );

    let slow = &reports[1]["trees"][0]["nodes"][0];
    assert!(
        slow["fetch"]["stopped"]
            .as_str()
            .unwrap()
            .contains("page time limit"),
        "{slow:#}"
    );
    assert_eq!(verdict(slow), "unknown");

    let lp = &reports[2]["trees"][0];
    let nodes = lp["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{lp:#}");
    assert!(
        nodes[2]["fetch"]["stopped"]
            .as_str()
            .unwrap()
            .contains("redirect loop")
    );
    assert!(
        nodes[2]["fetch"]["status"].is_null(),
        "the loop is not fetched again"
    );
}

/// The hop, depth and crawl time limits, with seeds from a `--seeds` file.
#[test]
fn hop_depth_and_crawl_time_limits_end_a_crawl_with_the_reason() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = Env::new(
        "[crawler]\nlab_allow = [\"127.0.0.0/8\"]\nmax_hops = 2\nmax_depth = 1\npage_timeout = \"10s\"\n",
    );
    let seeds = env.dir.path().join("seeds.txt");
    std::fs::write(
        &seeds,
        format!(
            "# the entrance, and the redirector on its own\n{}\n\n{}  # 302s\n",
            lab.url("/entrance.html"),
            lab.url("/tds")
        ),
    )
    .unwrap();
    let reports = crawl(&env, &["--seeds", seeds.to_str().unwrap()]);
    assert_eq!(reports.len(), 2);
    // entrance (depth 0) → inject.js (1) → the frame it writes (2).
    let tds = node(&reports[0]["trees"][0], "/tds");
    assert_eq!(tds["depth"], 2);
    assert_eq!(tds["fetch"]["stopped"], "depth limit of 1 reached");
    assert!(tds["fetch"]["status"].is_null());
    // /tds → /r1 → /r2 → /landing.html: the third redirect in a row.
    let t = &reports[1]["trees"][0];
    assert_eq!(node(t, "/r2")["fetch"]["status"], 302);
    let landing = node(t, "/landing.html");
    assert_eq!(landing["hops"], 3);
    assert_eq!(landing["fetch"]["stopped"], "hop limit of 2 reached");
    assert!(landing["fetch"]["status"].is_null());

    // The slow-loris page outlasts the whole crawl's time, not the page's.
    let env = Env::new(
        "[crawler]\nlab_allow = [\"127.0.0.0/8\"]\npage_timeout = \"1h\"\ncrawl_timeout = \"1s\"\n",
    );
    let t = &crawl(&env, &[&lab.url("/slow")])[0]["trees"][0];
    assert_eq!(t["stopped"], "crawl time limit of 1s reached", "{t:#}");
    assert_eq!(
        t["nodes"][0]["fetch"]["stopped"],
        "not answered within the crawl time limit"
    );
    assert_eq!(t["verdict"], "unknown");
}

#[test]
fn the_ssrf_guard_refuses_private_destinations() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let t = &crawl(&env, &[&lab.url("/private.html")])[0]["trees"][0];
    let intranet = node(t, "intranet.lab/");
    assert_eq!(intranet["fetch"]["refused"], true);
    assert!(
        intranet["fetch"]["stopped"]
            .as_str()
            .unwrap()
            .contains("10.0.0.7: private address"),
        "{intranet:#}"
    );
    let redirected = node(t, "192.168.1.1/admin");
    assert_eq!(redirected["edge"], "http-redirect");
    assert_eq!(redirected["fetch"]["refused"], true);
    assert!(redirected["fetch"]["status"].is_null());

    // Without the lab allowlist, a public-looking name that resolves to
    // 127.0.0.1 is refused, and so is the address itself; so is a name
    // the system's resolver answers with loopback (localhost, from
    // /etc/hosts).
    let port = lab.addr.port();
    let strict = Env::new("[crawler.hosts]\n\"public.example\" = \"127.0.0.1\"\n");
    let reports = crawl(
        &strict,
        &[
            &format!("http://public.example:{port}/entrance.html"),
            &lab.url("/entrance.html"),
            &format!("http://[::ffff:127.0.0.1]:{port}/entrance.html"),
            &format!("http://localhost:{port}/entrance.html"),
        ],
    );
    for r in &reports {
        let n = &r["trees"][0]["nodes"][0];
        assert_eq!(n["fetch"]["refused"], true, "{n:#}");
        assert!(n["fetch"]["status"].is_null());
        assert_eq!(r["verdict"], "unknown");
    }
    assert!(
        reports[0]["trees"][0]["nodes"][0]["fetch"]["stopped"]
            .as_str()
            .unwrap()
            .contains("loopback")
    );
    assert!(
        reports[2]["trees"][0]["nodes"][0]["fetch"]["stopped"]
            .as_str()
            .unwrap()
            .contains("IPv4-mapped")
    );
    let localhost = reports[3]["trees"][0]["nodes"][0]["fetch"]["stopped"]
        .as_str()
        .unwrap();
    assert!(localhost.contains("localhost: refused"), "{localhost}");
    assert!(localhost.contains("loopback"), "{localhost}");
}

#[test]
fn yara_rules_are_refused_clearly_by_a_kanki_without_yara() {
    // x.example is mapped to loopback and refused: no traffic leaves.
    let env = Env::new(&format!(
        "[crawler]\nyara_rules = [\"{}\"]\n[crawler.hosts]\n\"x.example\" = \"127.0.0.1\"\n",
        lab_rules().display()
    ));
    let out = env.run(&["crawl", "--dry-run", "http://x.example/"]);
    if YARA {
        assert!(out.status.success(), "{out:?}");
    } else {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("built without YARA"), "{err}");
        assert!(err.contains("lab.yar"), "{err}");
    }
}

#[test]
fn bad_arguments_get_clear_errors() {
    let env = lab_env("");
    let out = env.run(&["crawl", "--profile", "nokia-3310", "http://x.example/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile \"nokia-3310\""));
    let out = env.run(&["crawl"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to crawl"));
}

/// The decoded text body of an .eml file the outbox holds.
fn eml_body(eml: &str) -> String {
    let (_, body) = eml.split_once("\r\n\r\n").unwrap();
    let b64: String = body.split_whitespace().collect();
    String::from_utf8(data_encoding::BASE64.decode(b64.as_bytes()).unwrap()).unwrap()
}

fn outbox(env: &Env) -> Vec<String> {
    let dir = env.dir.path().join("data/outbox");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn a_notice_with_the_chain_goes_to_the_sites_contact_once() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env(&format!(
        "[crawler.notices]\nrdap_base = \"{}\"\nlanguage = \"en\"\n[smtp]\nfrom = \"abuse@isp.example\"\n",
        lab.url("/rdap/")
    ));
    // The lab is reached by address: its security.txt names the contact.
    let r = &crawl(&env, &["--notify", &lab.url("/entrance.html")])[0];
    assert_eq!(r["notices"][0]["to"], "security@clinic.example");
    let mails = outbox(&env);
    assert_eq!(mails.len(), 1);
    let eml = &mails[0];
    assert!(eml.contains("From: abuse@isp.example\r\n"), "{eml}");
    assert!(eml.contains("To: security@clinic.example\r\n"), "{eml}");
    let body = eml_body(eml);
    assert!(body.contains("Observed chain"), "{body}");
    for part in [
        "/entrance.html",
        "/js/inject.js",
        "/landing.html",
        "/payload/setup.exe",
    ] {
        assert!(body.contains(part), "{part} missing from\n{body}");
    }
    assert!(body.contains(&hex_sha256(&fake_pe())), "{body}");
    // A second crawl of the same site sends no second notice.
    let r = &crawl(&env, &["--notify", &lab.url("/entrance.html")])[0];
    assert_eq!(r["notices"].as_array().unwrap().len(), 0);
    assert_eq!(outbox(&env).len(), 1);
}

#[test]
fn without_security_txt_the_contact_comes_from_rdap_and_the_notice_can_be_japanese() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let port = lab.addr.port();
    let env = Env::new(&format!(
        "[crawler]\nlab_allow = [\"127.0.0.0/8\"]\n[crawler.hosts]\n\"www.clinic.lab\" = \"127.0.0.1\"\n[crawler.notices]\nrdap_base = \"{}\"\n",
        lab.url("/rdap/")
    ));
    let r = &crawl(
        &env,
        &[
            "--notify",
            &format!("http://www.clinic.lab:{port}/entrance.html"),
        ],
    )[0];
    let n = &r["notices"][0];
    assert_eq!(n["to"], "abuse@registrar-of-clinic.lab.example", "{n:#}");
    assert!(
        n["contacts"]["tried"].to_string().contains("security.txt"),
        "{n:#}"
    );
    // The domain's record after its own name's (www.clinic.lab has none),
    // then the address's, in that order.
    assert!(
        n["contacts"]["tried"]
            .to_string()
            .contains("/rdap/domain/www.clinic.lab"),
        "{n:#}"
    );
    assert_eq!(
        n["contacts"]["found"],
        serde_json::json!([
            [
                "abuse@registrar-of-clinic.lab.example",
                "rdap-domain clinic.lab"
            ],
            ["abuse@isp.example", "rdap-ip 127.0.0.1"]
        ]),
        "{n:#}"
    );
    let eml = &outbox(&env)[0];
    assert!(eml.contains("Subject: =?UTF-8?B?"), "{eml}");
    let body = eml_body(eml);
    assert!(body.contains("観測した経路"), "{body}");
    // The entrance host is marked compromised: its URL is listed, the host
    // itself stays off the DNS list.
    let hosts = env.ok(&["hosts", "list"]);
    assert!(hosts.contains("www.clinic.lab"), "{hosts}");
}

fn json_of(env: &Env, args: &[&str]) -> Value {
    serde_json::from_str(&env.ok(args)).unwrap()
}

/// The re-checked site whose URL ends with `suffix`.
fn site(env: &Env, suffix: &str) -> Option<Value> {
    json_of(env, &["crawls", "sites", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["url"].as_str().unwrap().ends_with(suffix))
        .cloned()
}

#[test]
fn kanki_serve_crawls_its_seeds_rechecks_and_delists_a_site_once_clean() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let port = lab.addr.port();
    let seeds = tempfile::NamedTempFile::new().unwrap();
    let entrance = format!("http://www.clinic.lab:{port}/entrance.html");
    std::fs::write(seeds.path(), format!("# the clinic\n{entrance}\n")).unwrap();
    let env = Env::new(&format!(
        "[crawler]\nlab_allow = [\"127.0.0.0/8\"]\npage_timeout = \"2s\"\n\
         [crawler.hosts]\n\"www.clinic.lab\" = \"127.0.0.1\"\n\
         [crawler.schedule]\nseeds = [\"{}\"]\nevery = \"1h\"\nrecheck_every = \"1s\"\n",
        seeds.path().display()
    ));
    let serve = env.serve();

    // The seed is crawled at start: the entrance site is tracked until
    // clean, the payload URL for its liveness; both are listed.
    eventually(60, "the seed crawled", || {
        site(&env, "/entrance.html").is_some() && site(&env, "/payload/setup.exe").is_some()
    });
    let s = site(&env, "/entrance.html").unwrap();
    assert_eq!(s["role"], "entrance");
    assert_eq!(s["verdict"], "entrance");
    assert!(s["clean_at"].is_null());
    let payload = site(&env, "/payload/setup.exe").unwrap();
    assert_eq!(payload["role"], "listed");
    assert_eq!(payload["liveness"], "online");
    let shown = json_of(&env, &["indicators", "show", &entrance, "--json"]);
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["category"], "entrance");
    assert!(env.ok(&["hosts", "list"]).contains("www.clinic.lab"));
    // The indicator's evidence link is the stored crawl, over the API.
    let link = shown["evidence"][0]["uri"].as_str().unwrap();
    let (path, node_ref) = link.split_once('#').unwrap();
    assert_eq!(node_ref, "windows-chrome-ja/0");
    let report: Value = common::client()
        .get(format!("{}{path}", serve.api))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(report["trees"][0]["nodes"][0]["url"], entrance);
    assert_eq!(report["trees"][0]["nodes"][0]["verdict"], "entrance");
    let crawls = json_of(&env, &["crawls", "list", "--json"]);
    assert_eq!(
        crawls.as_array().unwrap().last().unwrap()["origin"],
        "schedule"
    );

    // Still compromised: re-crawled, not delisted.
    eventually(30, "a re-crawl", || {
        json_of(&env, &["crawls", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["origin"] == "recheck")
    });
    assert!(site(&env, "/entrance.html").unwrap()["clean_at"].is_null());

    // The administrator cleans the site and the payload is taken down.
    lab.clean_up();
    eventually(30, "the entrance site found clean", || {
        !site(&env, "/entrance.html").unwrap()["clean_at"].is_null()
    });
    let s = site(&env, "/entrance.html").unwrap();
    assert_eq!(s["verdict"], "clean");
    assert_eq!(s["liveness"], "online");
    let shown = json_of(&env, &["indicators", "show", &entrance, "--json"]);
    assert_eq!(shown["status"], "delisted", "{shown:#}");
    assert!(
        shown["status_reason"]
            .as_str()
            .unwrap()
            .contains("found the site clean")
    );
    assert!(!env.ok(&["hosts", "list"]).contains("www.clinic.lab"));
    eventually(30, "the payload seen offline", || {
        site(&env, "/payload/setup.exe").unwrap()["liveness"] == "offline"
    });
    let payload = site(&env, "/payload/setup.exe").unwrap();
    assert!(payload["last_checked"].as_str().unwrap() > payload["last_online"].as_str().unwrap());
}

#[test]
fn site_notices_are_delivered_over_smtp() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let env = lab_env(&format!(
        "[crawler.notices]\nrdap_base = \"{}\"\nlanguage = \"en\"\ndelivery = \"smtp\"\n\
         [smtp]\nserver = \"127.0.0.1:{}\"\nfrom = \"abuse@isp.example\"\n",
        lab.url("/rdap/"),
        smtp.port
    ));
    let r = &crawl(&env, &["--notify", &lab.url("/entrance.html")])[0];
    assert_eq!(r["notices"][0]["status"], "queued");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["to"], "security@clinic.example");
    assert!(
        mails[0]["subject"]
            .as_str()
            .unwrap()
            .contains("has been compromised")
    );
    let body = mails[0]["body"].as_str().unwrap();
    assert!(body.contains("/payload/setup.exe"), "{body}");
    assert!(body.contains(&hex_sha256(&fake_pe())), "{body}");
    let notices = json_of(&env, &["crawls", "notices", "--json"]);
    assert_eq!(notices[0]["status"], "sent");
    assert_eq!(notices[0]["attempts"], 1);
    // The outbox keeps a copy of what was sent.
    assert_eq!(outbox(&env).len(), 1);
}

#[test]
fn over_tls_an_invalid_certificate_is_recorded_not_refused_and_http2_is_used() {
    let lab = LabServer::start(Duration::ZERO).unwrap();
    let env = lab_env("");
    let reports = crawl(
        &env,
        &[&lab.tls_url("/entrance.html"), &lab.url("/clean.html")],
    );
    let t = &reports[0]["trees"][0];
    let entrance = node(t, "/entrance.html");
    assert_eq!(
        entrance["fetch"]["http_version"], "HTTP/2.0",
        "{entrance:#}"
    );
    let cert = &entrance["fetch"]["cert"];
    assert_eq!(cert["valid"], false, "{cert:#}");
    assert!(!cert["problem"].as_str().unwrap().is_empty());
    assert!(
        cert["subject"].as_str().unwrap().contains("kanki lab"),
        "{cert:#}"
    );
    assert_eq!(cert["dns_names"][0], kanki_crawler::lab::LAB_CERT_NAME);
    assert_eq!(cert["sha256"].as_str().unwrap().len(), 64);
    // The chain is followed over TLS all the same.
    let pe = node(t, "/payload/setup.exe");
    assert!(pe["url"].as_str().unwrap().starts_with("https://"));
    assert_eq!(verdict(pe), "distribution");
    // Plain HTTP is HTTP/1.1, with no certificate.
    let clean = &reports[1]["trees"][0]["nodes"][0];
    assert_eq!(clean["fetch"]["http_version"], "HTTP/1.1");
    assert!(clean["fetch"]["cert"].is_null());
    assert_eq!(verdict(clean), "clean");
}
