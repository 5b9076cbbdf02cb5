//! The warning page of a running `kanki serve`, as a browser meets it: the
//! page for a listed name in Japanese and English, proceed once, a
//! false-positive report reaching the operators' queue, the walled garden
//! (entered and left through the CLI and the API, audited), and the
//! port-443 reset. Clients come from different 127.0.0.x addresses, which
//! the subscriber directory maps to subscribers. Then the same page in
//! headless Chromium, driven through chromedriver (WebDriver), with
//! screenshots kept under the cargo target directory.

mod common;

use std::io::Read;
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use common::browser::{Driver, chromium_args};
use common::{Env, Server, client, eventually, free_port};
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT_LANGUAGE, LOCATION, ORIGIN};
use serde_json::{Value, json};

/// A `kanki serve` with the warning page, consenting subscribers (S1 on
/// 127.0.0.2, S2 on 127.0.0.3, S3 on 127.0.0.1 where the browser runs) and
/// one listed URL with evidence.
struct Front {
    env: Env,
    server: Server,
    page: u16,
    reset: u16,
    indicator: i64,
}

impl Front {
    fn start(extra: &str) -> Front {
        let (page, reset) = (free_port(), free_port());
        let env = Env::new(&format!(
            "\n[directory]\nrefresh_every = \"100ms\"\nrebuild_every = \"0s\"\n\n\
[dns]\ngarden_allow = [\"clean.example.jp\"]\n\n\
[warning]\nlisten = \"127.0.0.1:{page}\"\nreset_listen = [\"127.0.0.1:{reset}\"]\n\
hits_flush_every = \"100ms\"\ncountermeasure_url = \"http://clean.example.jp/howto\"\n{extra}"
        ));
        let write = |name: &str, text: &str| {
            let p = env.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_string()
        };
        let subs = write(
            "subs.csv",
            "id,email,language,consent\nS1,s1@example.jp,ja,yes\nS2,s2@example.jp,en,yes\nS3,s3@example.jp,ja,yes\n",
        );
        env.ok(&["subscribers", "import", &subs]);
        let statics = write(
            "static.csv",
            "subscriber,prefix,from,to\nS1,127.0.0.2,2020-01-01,\nS2,127.0.0.3,2020-01-01,\nS3,127.0.0.1,2020-01-01,\n",
        );
        env.ok(&["bindings", "import", "--format", "static", &statics]);
        let server = env.serve();
        let api = &server.api;
        let c = client();
        let ind: Value = c
            .post(format!("{api}/api/v1/indicators"))
            .json(&json!({"value": "http://bad.example/payload.exe", "category": "malware-distribution"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let indicator = ind["id"].as_i64().unwrap();
        let r = c
            .post(format!("{api}/api/v1/indicators/{indicator}/evidence"))
            .json(&json!({"kind": "payload", "uri": "crawl:17/payload.exe", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "note": "Emotet loader"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        eventually(10, "bad.example in the policy", || {
            api_get(api, "/api/v1/lookup?name=bad.example")["verdict"] == "listed"
        });
        Front {
            env,
            server,
            page,
            reset,
            indicator,
        }
    }

    fn api(&self) -> &str {
        &self.server.api
    }

    /// The URL of `path` on `host` as the browser asks for it (the name
    /// resolves to the warning page, as the DNS front answers).
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.page)
    }

    fn origin(&self, host: &str) -> String {
        format!("http://{host}:{}", self.page)
    }
}

/// An HTTP client coming from `from`, resolving the test's names to the
/// warning page (as the DNS front would), not following redirects.
fn browser(from: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let to = "127.0.0.1:0".parse().unwrap();
    let mut b = Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30));
    for name in ["bad.example", "www.bad.example", "good.example"] {
        b = b.resolve(name, to);
    }
    b.build().unwrap()
}

fn api_get(api: &str, path: &str) -> Value {
    let r = client().get(format!("{api}{path}")).send().unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().unwrap()
}

fn metrics(api: &str) -> String {
    client()
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of a metric line starting with `series`, if there is one.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn page(c: &Client, url: &str, lang: &str) -> (u16, String) {
    let r = c.get(url).header(ACCEPT_LANGUAGE, lang).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The value of the first `attr="..."` after `marker` in a page.
fn attr_after(html: &str, marker: &str, attr: &str) -> String {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[from..];
    let start = rest.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
    let len = rest[start..].find('"').unwrap();
    rest[start..start + len].replace("&amp;", "&")
}

fn token(html: &str) -> String {
    attr_after(html, "name=\"token\"", "value")
}

fn post(c: &Client, url: &str, origin: &str, form: &[(&str, &str)]) -> Response {
    c.post(url)
        .header(ORIGIN, origin)
        .form(form)
        .send()
        .unwrap()
}

#[test]
fn the_page_says_what_was_blocked_and_why_in_both_languages_and_counts_hits() {
    let f = Front::start("");
    let s1 = browser("127.0.0.2");
    let url = f.url("bad.example", "/payload.exe");
    let id = f.indicator;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();

    let (status, ja) = page(&s1, &url, "ja,en-US;q=0.9,en;q=0.8");
    assert_eq!(
        status, 403,
        "a downloader must not take the page for the file"
    );
    for want in [
        "<html lang=\"ja\"",
        "この先のサイトは危険です",
        "<strong id=\"name\">bad.example</strong>",
        "マルウェア配布サイト",
        "operator",
        "Emotet loader",
        "SHA-256 9f86d081884c7d65",
        &format!("#{id}"),
        &today,
        "前のページに戻る",
        "今回だけ進む",
        "誤検知を報告する",
        ">English</a>",
    ] {
        assert!(ja.contains(want), "the Japanese page lacks {want:?}:\n{ja}");
    }

    let (status, en) = page(&s1, &url, "en-GB,en;q=0.9,ja;q=0.5");
    assert_eq!(status, 403);
    for want in [
        "<html lang=\"en\"",
        "The site ahead is dangerous",
        "malware distribution site",
        "Reported by",
        "Emotet loader",
        &format!("#{id}"),
        "Go back",
        "proceed this once",
        "Report a false positive",
        ">日本語</a>",
    ] {
        assert!(en.contains(want), "the English page lacks {want:?}:\n{en}");
    }

    // Neither language asked for: the configured default (Japanese).
    let (_, other) = page(&s1, &url, "fr-FR,fr;q=0.9");
    assert!(other.contains("<html lang=\"ja\""));

    // The switch leads to the same page in the other language.
    let switch = attr_after(&ja, "id=\"lang-switch\"", "href");
    assert!(
        switch.starts_with("/_kanki/warning?lang=en&path=/payload.exe"),
        "{switch}"
    );
    let (status, switched) = page(&s1, &f.url("bad.example", &switch), "ja");
    assert_eq!(status, 403);
    assert!(switched.contains("The site ahead is dangerous"));

    // A subdomain of the listed name: that name, blocked through its parent.
    let (status, www) = page(&s1, &f.url("www.bad.example", "/"), "en");
    assert_eq!(status, 403);
    assert!(www.contains("<strong id=\"name\">www.bad.example</strong>"));
    assert!(www.contains("bad.example (and its subdomains)"));

    // A name not listed, and the bare address: nothing blocked, no form.
    for u in [
        f.url("good.example", "/"),
        format!("http://127.0.0.1:{}/", f.page),
    ] {
        let (status, body) = page(&s1, &u, "en");
        assert_eq!(status, 200, "{u}");
        assert!(
            body.contains("id=\"not-listed\"") && !body.contains("name=\"token\""),
            "{body}"
        );
    }

    // What the browser sends ends up escaped, never as markup.
    let (_, hostile) = page(
        &s1,
        &f.url(
            "bad.example",
            "/_kanki/warning?lang=en&path=/%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        ),
        "en",
    );
    assert!(hostile.contains("The site ahead is dangerous"));
    assert!(!hostile.contains("<script>alert"), "{hostile}");
    assert!(hostile.contains("/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));

    // Hits: counted per indicator per day (ja, en, fr, switch, www, hostile).
    let hits = format!("/api/v1/warning/hits?indicator={id}");
    eventually(10, "six hits stored", || {
        api_get(f.api(), &hits)[0]["hits"] == 6
    });
    let h = api_get(f.api(), &hits);
    assert_eq!(h[0]["day"], today);
    assert_eq!(h[0]["proceeds"], 0);
    let m = metrics(f.api());
    assert_eq!(
        metric(
            &m,
            &format!("kanki_warning_indicator_hits_today{{indicator=\"{id}\"}}")
        ),
        Some(6.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "kanki_warning_pages_total{page=\"warning\"}"),
        Some(6.0)
    );
    assert_eq!(
        metric(&m, "kanki_warning_pages_total{page=\"not-listed\"}"),
        Some(2.0)
    );

    // The operators' side is described in the OpenAPI document.
    let doc = api_get(f.api(), "/api/v1/openapi.json");
    for p in [
        "/api/v1/false-positives",
        "/api/v1/false-positives/{id}",
        "/api/v1/false-positives/{id}/review",
        "/api/v1/garden",
        "/api/v1/garden/{subscriber}",
        "/api/v1/warning/hits",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }

    // Port 443 of the warning address: accepted, then reset at once.
    let mut tls = TcpStream::connect(("127.0.0.1", f.reset)).unwrap();
    tls.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let e = tls
        .read(&mut buf)
        .expect_err("the connection is reset, not answered");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    eventually(5, "the reset counted", || {
        metric(&metrics(f.api()), "kanki_warning_tls_resets_total") == Some(1.0)
    });
}

#[test]
fn proceed_once_grants_that_client_a_pass_for_that_name_and_no_other_site_can() {
    let f = Front::start("");
    let (s1, s2) = (browser("127.0.0.2"), browser("127.0.0.3"));
    let url = f.url("bad.example", "/payload.exe?x=1");
    let proceed = f.url("bad.example", "/_kanki/proceed");
    let origin = f.origin("bad.example");
    let (_, html) = page(&s1, &url, "en");
    let tok = token(&html);
    let form = [
        ("path", "/payload.exe?x=1"),
        ("token", tok.as_str()),
        ("lang", "en"),
    ];

    // Refused: no token, another site's page posting, another client
    // replaying S1's token.
    let r = post(
        &s1,
        &proceed,
        &origin,
        &[("path", "/payload.exe"), ("lang", "en")],
    );
    assert_eq!(r.status(), 403);
    let r = post(&s1, &proceed, "http://evil.example", &form);
    assert_eq!(r.status(), 403);
    let r = s1
        .post(&proceed)
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(&s2, &proceed, &origin, &form);
    assert_eq!(r.status(), 403);
    let (status, again) = page(&s1, &url, "en");
    assert_eq!(status, 403, "no pass was granted: {again}");

    // Accepted: back to the URL asked for, and a pass for S1's address only.
    let r = post(&s1, &proceed, &origin, &form);
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], url.as_str());
    let (status, passed) = page(&s1, &url, "en");
    assert_eq!(status, 200);
    assert!(passed.contains("id=\"pass-granted\""), "{passed}");
    assert!(passed.contains("for 10 minutes"), "{passed}");
    let (status, _) = page(&s2, &url, "en");
    assert_eq!(status, 403, "the pass is that client's");
    let (status, _) = page(&s1, &f.url("www.bad.example", "/"), "en");
    assert_eq!(status, 200, "the pass covers the name's subdomains");

    let hits = format!("/api/v1/warning/hits?indicator={}", f.indicator);
    eventually(10, "the proceed counted", || {
        api_get(f.api(), &hits)[0]["proceeds"] == 1
    });
    let m = metrics(f.api());
    assert_eq!(metric(&m, "kanki_warning_proceeds_total"), Some(1.0));
    assert_eq!(
        metric(&m, "kanki_warning_rejected_forms_total{outcome=\"token\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "kanki_warning_rejected_forms_total{outcome=\"origin\"}"),
        Some(2.0),
        "{m}"
    );
}

#[test]
fn false_positive_reports_reach_the_operators_queue() {
    let f = Front::start("reports_per_hour = 2\n");
    let s1 = browser("127.0.0.2");
    let url = f.url("bad.example", "/payload.exe");
    let report = f.url("bad.example", "/_kanki/report");
    let origin = f.origin("bad.example");
    let (_, html) = page(&s1, &url, "ja");
    let tok = token(&html);

    let r = post(
        &s1,
        &report,
        &origin,
        &[
            ("path", "/payload.exe"),
            ("token", &tok),
            ("lang", "ja"),
            ("note", "  "),
        ],
    );
    assert_eq!(r.status(), 400, "a report needs a note");
    let r = post(
        &s1,
        &report,
        &origin,
        &[
            ("path", "/payload.exe"),
            ("token", &tok),
            ("lang", "ja"),
            (
                "note",
                "私の店のサイトです。\u{1b}[31mマルウェアはありません",
            ),
            ("contact", "owner@bad.example"),
        ],
    );
    assert_eq!(r.status(), 200);
    let thanks = r.text().unwrap();
    assert!(
        thanks.contains("id=\"report-thanks\"") && thanks.contains("受付番号 1"),
        "{thanks}"
    );

    let queue = api_get(f.api(), "/api/v1/false-positives");
    let item = &queue["items"][0];
    assert_eq!(item["name"], "bad.example");
    assert_eq!(item["matched"], "bad.example");
    assert_eq!(item["indicator_ids"], json!([f.indicator]));
    assert_eq!(item["url"], url);
    assert_eq!(
        item["note"], "私の店のサイトです。[31mマルウェアはありません",
        "control characters dropped"
    );
    assert_eq!(item["contact"], "owner@bad.example");
    assert_eq!(item["language"], "ja");
    assert_eq!(item["status"], "open");
    let out = f.env.ok(&["false-positives", "list"]);
    assert!(
        out.contains("bad.example") && out.contains("私の店のサイトです"),
        "{out}"
    );

    // Two an hour from one address: the third is refused.
    let second = [
        ("path", "/"),
        ("token", tok.as_str()),
        ("lang", "en"),
        ("note", "again"),
    ];
    assert_eq!(post(&s1, &report, &origin, &second).status(), 200);
    let r = post(&s1, &report, &origin, &second);
    assert_eq!(r.status(), 429);

    // The operator agrees: the report is closed, the listing goes, the
    // page stops warning.
    let c = client();
    let r = c
        .post(format!("{}/api/v1/false-positives/1/review", f.api()))
        .header("X-Kanki-Actor", "soc")
        .json(&json!({"outcome": "false-positive", "note": "a real shop, clean on re-crawl"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().unwrap();
    assert_eq!(done["status"], "reviewed");
    assert_eq!(done["reviewed_by"], common::test_actor());
    let ind = api_get(f.api(), &format!("/api/v1/indicators/{}", f.indicator));
    assert_eq!(ind["status"], "false-positive");
    let r = c
        .post(format!("{}/api/v1/false-positives/1/review", f.api()))
        .json(&json!({"outcome": "confirmed", "note": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409, "reviewed once");
    eventually(10, "bad.example off the list", || {
        page(&s1, &url, "en").0 == 200
    });
    let open = api_get(f.api(), "/api/v1/false-positives");
    assert_eq!(
        open["items"].as_array().unwrap().len(),
        1,
        "the second report is still open"
    );
    let out = f
        .env
        .ok(&["false-positives", "list", "--status", "reviewed"]);
    assert!(
        out.contains(&format!(
            "reviewed: false-positive by {}",
            common::test_actor()
        )),
        "{out}"
    );
}

#[test]
fn the_walled_garden_shows_its_notice_and_how_to_leave_and_is_audited() {
    let f = Front::start("");
    let (s1, s2) = (browser("127.0.0.2"), browser("127.0.0.3"));
    let api = f.api();
    // A proceed token S1 got on the warning page before entering.
    let bad = f.url("bad.example", "/payload.exe");
    let early_token = token(&page(&s1, &bad, "en").1);
    let out = f.env.ok(&[
        "garden",
        "enter",
        "S1",
        "--ground",
        "emergency-evacuation",
        "--reason",
        "Mirai C&C traffic seen, case 42",
        "--notice",
        "お使いの機器から Mirai の通信を確認しました。",
    ]);
    assert!(out.contains("S1 is in the walled garden"), "{out}");
    let out = f.env.run(&[
        "garden", "enter", "S9", "--ground", "consent", "--reason", "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no subscriber S9"));

    // kanki serve picks up the change made by another process.
    let good = f.url("good.example", "/");
    eventually(10, "S1 sees the garden", || {
        page(&s1, &good, "ja").1.contains("id=\"garden\"")
    });
    let (status, g) = page(&s1, &good, "ja");
    assert_eq!(status, 403);
    for want in [
        "お使いの回線からの通信を制限しています",
        "お使いの機器から Mirai の通信を確認しました。",
        "href=\"http://clean.example.jp/howto\"",
        "clean.example.jp",
        "駆除が終わりました",
    ] {
        assert!(g.contains(want), "the garden page lacks {want:?}:\n{g}");
    }
    let (status, other) = page(&s2, &good, "en");
    assert_eq!(status, 200, "S2 is not in the garden: {other}");
    // The countermeasure site is reachable from inside, under any name.
    let (status, site) = page(&s1, &f.url("good.example", "/countermeasures"), "ja");
    assert_eq!(status, 200, "{site}");
    let (status, _) = page(
        &s1,
        &f.url("good.example", "/countermeasures/?lang=en"),
        "ja",
    );
    assert_eq!(status, 308);
    assert!(!site.contains("id=\"garden\""), "{site}");
    // A listed name from inside: the garden, with why the name is listed,
    // and no way to proceed.
    let (_, gb) = page(&s1, &bad, "en");
    assert!(
        gb.contains("id=\"garden\"")
            && gb.contains("Emotet loader")
            && !gb.contains("id=\"proceed\""),
        "{gb}"
    );
    let r = post(
        &s1,
        &f.url("bad.example", "/_kanki/proceed"),
        &f.origin("bad.example"),
        &[("path", "/payload.exe"), ("token", &early_token)],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/payload.exe",
        "no pass out of the garden"
    );

    // "I have cleaned my machine" goes to the countermeasure site's one
    // route; with no notice reference (an operator put S1 here) it is a
    // leave request for the operator. Not from another site.
    let action = attr_after(&g, "id=\"cleaned\"", "action");
    assert_eq!(action, "/countermeasures/ack?lang=ja");
    let note = [("note", "ウイルス対策ソフトで駆除しました")];
    let r = post(
        &s1,
        &f.url("good.example", &action),
        "http://evil.example",
        &note,
    );
    assert_eq!(r.status(), 403);
    let r = post(
        &s1,
        &f.url("good.example", &action),
        &f.origin("good.example"),
        &note,
    );
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("id=\"leave-requested\""));
    let garden = api_get(api, "/api/v1/garden");
    assert_eq!(garden[0]["subscriber"], "S1");
    assert_eq!(garden[0]["ground"], "emergency-evacuation");
    // The command line records the operating-system user.
    assert_eq!(garden[0]["entered_by"], kanki_operators::os_actor());
    assert_eq!(
        garden[0]["leave_request_note"],
        "ウイルス対策ソフトで駆除しました"
    );
    assert!(garden[0]["leave_requested_at"].is_string());
    assert!(page(&s1, &good, "ja").1.contains("id=\"leave-requested\""));
    let out = f.env.ok(&["garden", "list"]);
    assert!(
        out.contains("S1") && out.contains("asked to leave"),
        "{out}"
    );

    // The operator lets S1 out through the API: at once.
    let c = client();
    let r = c
        .delete(format!("{api}/api/v1/garden/S1"))
        .header("X-Kanki-Actor", "soc-bob")
        .json(&json!({"ground": "emergency-evacuation", "reason": "clean on re-scan"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = page(&s1, &good, "en");
    assert_eq!(status, 200);
    let (status, w) = page(&s1, &bad, "en");
    assert_eq!(status, 403);
    assert!(
        w.contains("id=\"proceed\""),
        "outside, the plain warning: {w}"
    );
    let r = c
        .delete(format!("{api}/api/v1/garden/S1"))
        .json(&json!({"ground": "emergency-evacuation", "reason": "again"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // Entering through the API; twice records nothing; unknown: 404.
    let enter = |who: &str| {
        c.post(format!("{api}/api/v1/garden/{who}"))
            .header("X-Kanki-Actor", "removal")
            .json(&json!({"ground": "legitimate-business", "reason": "open SMTP relay"}))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(enter("S2"), 201);
    assert!(page(&s2, &good, "en").1.contains("id=\"garden\""));
    assert_eq!(enter("S2"), 200);
    assert_eq!(enter("S9"), 404);
    let r = c
        .post(format!("{api}/api/v1/garden/S2"))
        .json(&json!({"ground": "curiosity", "reason": "x"}))
        .send()
        .unwrap();
    assert!(r.status().is_client_error());
    f.env.ok(&[
        "garden",
        "leave",
        "S2",
        "--ground",
        "legitimate-business",
        "--reason",
        "relay closed",
    ]);
    let out = f.env.run(&[
        "garden",
        "leave",
        "S2",
        "--ground",
        "legitimate-business",
        "--reason",
        "x",
    ]);
    assert!(!out.status.success(), "not inside any more");

    // Every entry and exit is in the audit log, with its ground, and the
    // chain verifies.
    let audit = api_get(api, "/api/v1/audit?limit=100");
    let seen: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("garden"))
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["actor"].as_str().unwrap().to_string(),
                r["ground"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let test_actor = common::test_actor();
    // The command line records the operating-system user running it.
    let os_actor = kanki_operators::os_actor();
    let want: Vec<(String, String, String)> = [
        ("garden-enter", os_actor.as_str(), "emergency-evacuation"),
        ("garden-leave-request", "subscriber", "emergency-evacuation"),
        ("garden-leave", test_actor.as_str(), "emergency-evacuation"),
        ("garden-enter", test_actor.as_str(), "legitimate-business"),
        ("garden-leave", "operator", "legitimate-business"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen.len(), want.len(), "{seen:?}");
    for (s, w) in seen.iter().zip(&want) {
        assert_eq!(s.0, w.0);
        assert_eq!(s.2, w.2);
        if w.1 != "operator" {
            assert_eq!(s.1, w.1);
        }
    }
    assert!(f.env.ok(&["audit", "verify"]).contains("audit log intact"));
}

#[test]
fn the_page_works_in_headless_chromium_in_both_languages() {
    let f = Front::start("");
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    // The browser resolves the listed name to the warning page, as a
    // consenting subscriber's resolver (the DNS front) would.
    let args = chromium_args(
        profile.path(),
        &[
            "--window-size=1000,1300".into(),
            "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".into(),
            format!("--host-resolver-rules=MAP bad.example 127.0.0.1:{}", f.page),
        ],
    );
    let s = driver.session(&args, "ja");
    let healthz = format!("{}/healthz", f.api());
    let warning = "http://bad.example/payload.exe";

    // Japanese, from Accept-Language.
    s.go(&healthz);
    s.go(warning);
    let ja = s.source();
    assert!(
        ja.contains("この先のサイトは危険です") && ja.contains("マルウェア配布サイト"),
        "{ja}"
    );
    assert!(ja.contains("Emotet loader"));
    let shot = s.screenshot("warning-page-ja.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Go back: to where the browser was.
    s.click("#back");
    eventually(10, "back to the previous page", || s.url() == healthz);

    // The switch: English.
    s.go(warning);
    s.click("#lang-switch");
    eventually(10, "the English page", || {
        s.source().contains("The site ahead is dangerous")
    });
    assert!(
        s.url()
            .starts_with("http://bad.example/_kanki/warning?lang=en"),
        "{}",
        s.url()
    );
    let shot = s.screenshot("warning-page-en.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Report a false positive through the form.
    s.type_into("#note", "Chromium: this is my own shop");
    s.type_into("#contact", "owner@bad.example");
    s.click("#send-report");
    s.wait_for("#report-thanks");
    let queue = api_get(f.api(), "/api/v1/false-positives");
    assert_eq!(queue["items"][0]["note"], "Chromium: this is my own shop");
    assert_eq!(queue["items"][0]["language"], "en");
    assert_eq!(queue["items"][0]["url"], warning);

    // Proceed once: redirected to the URL asked for, where the pass shows
    // (the browser has not asked the name again yet).
    s.go(warning);
    s.click("#proceed");
    s.wait_for("#pass-granted");
    assert_eq!(s.url(), warning);
    s.screenshot("warning-page-pass.png");
    assert_eq!(
        metric(&metrics(f.api()), "kanki_warning_proceeds_total"),
        Some(1.0)
    );

    // The walled garden: the browser's subscriber (S3) is put inside; any
    // name shows the notice, and "I have cleaned my machine" (on the
    // countermeasure site, no reference) is recorded for the operator.
    let r = client()
        .post(format!("{}/api/v1/garden/S3", f.api()))
        .json(
            &json!({"ground": "emergency-evacuation", "reason": "bot traffic, case 7",
                      "notice": "お使いの機器から、ボットに特有の通信を確認しました。"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    s.go("http://bad.example/");
    s.wait_for("#garden");
    assert!(s.source().contains("ボットに特有の通信"));
    s.screenshot("warning-page-garden.png");
    s.type_into("#cleaned-note", "駆除ツールを実行しました");
    s.click("#send-cleaned");
    s.wait_for("#leave-requested");
    let garden = api_get(f.api(), "/api/v1/garden");
    assert_eq!(garden[0]["leave_request_note"], "駆除ツールを実行しました");
}

/// A malware name comes from a report, so it is anyone's text. A
/// Shadowserver report names hostile families (a `javascript:` URL, a
/// script, markup closing an attribute); the countermeasure site's pages
/// about those notices, loaded in headless Chromium, run no script and
/// hold no link but to the site, and every response of the site carries
/// the warning page's CSP, frame and nosniff headers.
#[test]
fn hostile_family_names_from_a_report_run_no_script_and_link_nowhere() {
    let site_port = common::free_port();
    let env = Env::new(&format!(
        "[countermeasure_site]\nlisten = \"127.0.0.1:{site_port}\"\n"
    ));
    env.directory(
        "id,email,postal_address,language,consent\nS4,,東京都千代田区1-1-1,en,yes\n",
        "S4,192.0.2.44,2020-01-01,\n",
    );
    let hostile = [
        "javascript:alert(1)",
        // A script would set the title to "pwned" (a word the names
        // themselves do not hold).
        "<script>document.title='p'+'wned'</script>",
        "\"><img src=x onerror=\"document.title='p'+'wned'\">",
    ];
    let rows: Vec<(&str, &str)> = hostile.iter().map(|n| ("192.0.2.44", *n)).collect();
    let csv = common::sinkhole_csv(&rows);
    let report = env.dir.path().join("2026-05-01-event4_sinkhole-asn-jp.csv");
    std::fs::write(&report, csv).unwrap();
    env.ok(&["ingest", "-f", "shadowserver", report.to_str().unwrap()]);
    let sent = env.ok(&["notices", "send"]);
    assert!(sent.contains("3 letters queued"), "{sent}");
    let letters = env.dir.path().join("letters.csv");
    env.ok(&["notices", "letters", "-o", letters.to_str().unwrap()]);
    let text = std::fs::read_to_string(&letters).unwrap();
    let references: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("K-") && w.len() == 16)
        .map(String::from)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(references.len(), 3, "{text}");
    // The letter shows the names in the safe alphabet only.
    assert!(
        !text.contains("javascript:") && !text.contains('<'),
        "{text}"
    );

    let _server = env.serve();
    let site = format!("http://127.0.0.1:{site_port}/countermeasures");

    // Every response of the site, pages and errors, with the headers.
    let c = client();
    for r in [
        c.get(format!("{site}?lang=en")).send().unwrap(),
        c.get(format!("{site}/javascript:alert(1)")).send().unwrap(),
        c.get(format!("{site}/verify?reference={}", references[0]))
            .send()
            .unwrap(),
        c.get(format!("{site}/verify?reference=K-NONE"))
            .send()
            .unwrap(),
        c.get(format!("{site}/ack")).send().unwrap(),
        c.post(format!("{site}/ack"))
            .form(&[("reference", "K-NONE")])
            .send()
            .unwrap(),
    ] {
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{}: {csp}",
            r.url()
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{}", r.url());
        assert_eq!(h["x-content-type-options"], "nosniff", "{}", r.url());
    }

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let args = chromium_args(profile.path(), &[]);
    let s = driver.session(&args, "en");
    // Every link of the page: its scheme and where it goes; and the title
    // (which a script of the report's would have changed).
    let links_and_title = || {
        s.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({
                "script": "return [document.title, Array.from(document.querySelectorAll('a')).map(a => a.protocol + ' ' + a.href)];",
                "args": [],
            })),
        )
    };
    let check = |what: &str| {
        let v = links_and_title();
        let title = v[0].as_str().unwrap();
        assert!(!title.contains("pwned"), "{what}: a script ran: {title}");
        for l in v[1].as_array().unwrap() {
            let l = l.as_str().unwrap();
            assert!(
                l.starts_with(&format!("http: {site}")),
                "{what}: a link elsewhere: {l}\n{}",
                s.source()
            );
        }
        assert!(!s.has("script") && !s.has("img"), "{what}: {}", s.source());
    };
    for reference in &references {
        s.go(&format!("{site}/verify?lang=en&reference={reference}"));
        s.wait_for("#genuine");
        check(reference);
        // The guidance link leads to the site (no family page is
        // configured: the index), and runs nothing.
        s.click("#guidance");
        eventually(10, "the site's index", || s.url().starts_with(&site));
        check("the guidance page");
    }
    for name in hostile {
        let path: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        s.go(&format!("{site}/{path}?lang=en"));
        s.wait_for("h1");
        check(name);
    }
}
