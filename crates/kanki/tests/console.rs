//! The operator console of a running `kanki serve`, as the abuse desk
//! meets it: each role's pages and buttons (absent when the roles lack
//! them, and their routes refusing), hostile values from reports shown
//! inert, out-of-range query strings answered with a clear message, and a
//! case reviewed and acted on in headless Chromium in both languages, with
//! screenshots of every page kept under the cargo target directory
//! (`console-screenshots/`).

mod common;

use common::browser::{Driver, chromium_args};

/// The WebDriver key code of Enter.
const ENTER: &str = "\u{E007}";
use common::{Env, Server, Smtp, client, eventually};
use reqwest::blocking::Client;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::Value;

const PASSWORD: &str = "a long pass phrase for tests";

/// The hostile family name every report here carries.
const HOSTILE: &str = "javascript:alert(1)";

/// A `kanki serve` with one consenting subscriber S1 (s1@example.jp) on
/// 198.51.100.7, one case for S1 from a sinkhole report whose family is
/// [`HOSTILE`], and local operators of the given roles.
struct Desk {
    env: Env,
    server: Server,
    smtp: Option<Smtp>,
}

impl Desk {
    fn start(operators: &[(&str, &str)], with_mail: bool) -> Desk {
        Desk::start_with(operators, with_mail, "")
    }

    /// [`Desk::start`] with more configuration.
    fn start_with(operators: &[(&str, &str)], with_mail: bool, config: &str) -> Desk {
        let mail_dir = tempfile::tempdir().unwrap().keep();
        let smtp = with_mail.then(|| Smtp::start(&mail_dir));
        let mut extra = smtp.as_ref().map_or(String::new(), |s| {
            format!(
                "\n[smtp]\nserver = \"127.0.0.1:{}\"\nfrom = \"abuse@isp.example\"\ntls = \"none\"\n\n[notices]\nmin_interval = \"0s\"\n\n[countermeasure_site]\npublic_url = \"https://isp.example/countermeasures\"\n",
                s.port
            )
        });
        extra.push_str(config);
        let env = Env::new(&extra);
        let from = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
        env.directory(
            "id,email,language,consent\nS1,s1@example.jp,ja,yes\n",
            &format!("S1,198.51.100.7/32,{from},\n"),
        );
        for (name, roles) in operators {
            env.ok_with_stdin(&["operators", "add", name, "--roles", roles], PASSWORD);
        }
        let server = env.serve();
        let report = common::sinkhole_csv(&[("198.51.100.7", HOSTILE)]);
        let r = client()
            .post(format!(
                "{}/api/v1/events?format=shadowserver&name=2026-05-01-event4_sinkhole-asn-jp.csv",
                server.api
            ))
            .body(report)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        Desk { env, server, smtp }
    }

    fn api(&self) -> &str {
        &self.server.api
    }

    /// Lists a URL carrying a script tag, its source's reference a
    /// `javascript:` link; returns its id.
    fn hostile_indicator(&self) -> i64 {
        let r = client()
            .post(format!("{}/api/v1/indicators", self.api()))
            .json(&serde_json::json!({
                "value": "http://bad.example/<script>alert(1)</script>",
                "category": "malware-distribution",
                "reference_url": HOSTILE,
                "reporter": "<img src=x onerror=alert(2)>",
                "source": "test-feed",
                "tlp": "clear",
            }))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
        r.json::<Value>().unwrap()["id"].as_i64().unwrap()
    }

    /// The one case (through the API).
    fn case(&self) -> Value {
        let v: Value = client()
            .get(format!("{}/api/v1/cases", self.api()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
        v["items"][0].clone()
    }
}

/// An operator's browser session without a browser: its cookie and CSRF
/// token, through the sign-in page's form.
struct Signed {
    http: Client,
    api: String,
    cookie: String,
    csrf: String,
}

fn sign_in(api: &str, name: &str) -> Signed {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{api}/sign-in"))
        .form(&[("name", name), ("password", PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    assert_eq!(r.headers()[LOCATION], "/", "signed in, to the console");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me: Value = http
        .get(format!("{api}/api/v1/session"))
        .header(COOKIE, &cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    Signed {
        http,
        api: api.to_string(),
        csrf: me["csrf_token"].as_str().unwrap().to_string(),
        cookie,
    }
}

impl Signed {
    fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .header(COOKIE, &self.cookie)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Posts a console form; `csrf` adds the session's token.
    fn post(&self, path: &str, fields: &[(&str, &str)], csrf: bool) -> (u16, String) {
        let mut fields = fields.to_vec();
        if csrf {
            fields.push(("csrf_token", &self.csrf));
        }
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .header(COOKIE, &self.cookie)
            .form(&fields)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }
}

#[test]
fn each_role_sees_only_its_pages_and_its_routes_refuse() {
    let desk = Desk::start(
        &[
            ("vic", "viewer"),
            ("ann", "analyst"),
            ("nora", "notices-officer"),
            ("otto", "attribution-officer"),
        ],
        false,
    );
    let api = desk.api();
    let case = desk.case()["id"].as_i64().unwrap();

    // No session: a browser is sent to sign in, from any page.
    let anonymous = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/cases", "/who"] {
        let r = anonymous.get(format!("{api}{path}")).send().unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()[LOCATION], "/sign-in", "{path}");
    }

    // The navigation lists only what the roles allow; the rest refuses.
    let nav = |s: &Signed| {
        let (status, home) = s.get("/");
        assert_eq!(status, 200, "{home}");
        (
            home.contains("href=\"/cases\""),
            home.contains("href=\"/who\""),
        )
    };
    let vic = sign_in(api, "vic");
    assert_eq!(nav(&vic), (false, false));
    let (status, page) = vic.get("/cases");
    assert_eq!(status, 403);
    assert!(page.contains("Not allowed"), "{page}");
    assert_eq!(vic.get(&format!("/cases/{case}")).0, 403);
    assert_eq!(vic.get("/who").0, 403);

    let ann = sign_in(api, "ann");
    assert_eq!(nav(&ann), (true, false));
    let (status, queue) = ann.get("/cases");
    assert_eq!(status, 200, "{queue}");
    assert!(queue.contains(&format!("href=\"/cases/{case}\"")));
    assert!(
        !queue.contains("id=\"bulk\""),
        "an analyst has no bulk actions"
    );
    assert!(
        !queue.contains(">S1<"),
        "an analyst does not see the subscriber's identity"
    );
    assert!(queue.contains("withheld"));
    // The same pseudonym as the API gives the analyst.
    let (_, api_cases) = ann.get("/api/v1/cases");
    let api_cases: Value = serde_json::from_str(&api_cases).unwrap();
    let pseudonym = api_cases["items"][0]["subscriber"].as_str().unwrap();
    assert!(pseudonym.starts_with("p-"), "{api_cases}");
    assert!(queue.contains(&format!(">{pseudonym}</span>")), "{queue}");
    let (status, _) = ann.post(
        "/cases/actions",
        &[
            ("case", &case.to_string()),
            ("action", "hold"),
            ("reason", "x"),
        ],
        true,
    );
    assert_eq!(status, 403);
    assert_eq!(ann.get("/who").0, 403);
    assert_eq!(
        ann.post("/who", &[("address", "198.51.100.7")], true).0,
        403
    );
    let (status, page) = ann.get(&format!("/cases/{case}"));
    assert_eq!(status, 200);
    assert!(!page.contains(">S1<") && page.contains("withheld"));

    // The notices officer acts; a form without the session's token is
    // refused and changes nothing.
    let nora = sign_in(api, "nora");
    assert_eq!(nav(&nora), (true, false));
    let (_, queue) = nora.get("/cases");
    assert!(queue.contains("id=\"bulk\""));
    let hold = [
        ("case", case.to_string()),
        ("action", "hold".into()),
        ("reason", "customer called".into()),
    ];
    let hold: Vec<(&str, &str)> = hold.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(nora.post("/cases/actions", &hold, false).0, 403);
    assert_eq!(desk.case()["held"], false);
    let (status, page) = nora.post("/cases/actions", &hold, true);
    assert_eq!(status, 200, "{page}");
    assert_eq!(desk.case()["held"], true);
    assert_eq!(desk.case()["hold_reason"], "customer called");

    // The attribution officer sees identities and asks who held an
    // address; the form requires a ground and a purpose.
    let otto = sign_in(api, "otto");
    assert_eq!(nav(&otto), (true, true));
    let (_, page) = otto.get(&format!("/cases/{case}"));
    assert!(
        page.contains("<span class=\"subscriber\">S1</span>"),
        "{page}"
    );
    let (status, page) = otto.post("/who", &[("address", "198.51.100.7")], true);
    assert_eq!(status, 400);
    assert!(page.contains("Choose the legal ground") || page.contains("法的根拠を選んでください"));
    let (status, page) = otto.post(
        "/who",
        &[
            ("address", "198.51.100.7"),
            ("ground", "emergency-evacuation"),
            ("purpose", "seen talking to a C&C server"),
        ],
        true,
    );
    assert_eq!(status, 400, "an emergency cites its case");
    assert!(page.contains("cites the case or event") || page.contains("緊急避難では"));
    let (status, page) = otto.post(
        "/who",
        &[
            ("address", "198.51.100.7"),
            ("ground", "emergency-evacuation"),
            ("purpose", "seen talking to a C&C server"),
            ("case", &case.to_string()),
        ],
        true,
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"confidence\">exact<"), "{page}");
    let seq = page
        .split("id=\"audit-record\">#")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    let audit = desk.env.ok(&["audit", "show", "--action", "who", "--json"]);
    let record: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(record["seq"].to_string(), seq, "{audit}");
    assert_eq!(record["actor"], "otto");

    // Each view of the case page left its audit record.
    let views = desk
        .env
        .ok(&["audit", "show", "--action", "view-case", "--json"]);
    let actors: Vec<String> = views
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["actor"].to_string())
        .collect();
    assert!(actors.contains(&"\"ann\"".to_string()), "{views}");
    assert!(actors.contains(&"\"otto\"".to_string()), "{views}");
}

#[test]
fn hostile_values_are_inert_and_bad_queries_get_a_clear_message() {
    let desk = Desk::start(&[("nora", "notices-officer")], false);
    let nora = sign_in(desk.api(), "nora");
    let case = desk.case()["id"].as_i64().unwrap();
    for path in ["/cases".to_string(), format!("/cases/{case}")] {
        let r = nora
            .http
            .get(format!("{}{path}", desk.api()))
            .header(COOKIE, &nora.cookie)
            .send()
            .unwrap();
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("script-src 'nonce-"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let page = r.text().unwrap();
        assert!(!page.contains("href=\"javascript:"), "{page}");
        assert!(!page.contains("<script>"), "only nonce'd scripts: {page}");
        assert!(!page.contains(" onclick="), "no inline handlers");
    }
    // An indicator whose URL carries a script and whose reference is a
    // javascript: link: text, never markup or a live link.
    let id = desk.hostile_indicator();
    let curator = {
        desk.env.ok_with_stdin(
            &["operators", "add", "cora", "--roles", "list-curator"],
            PASSWORD,
        );
        sign_in(desk.api(), "cora")
    };
    for path in [
        format!("/indicators?q={}", "bad.example"),
        format!("/indicators/{id}"),
    ] {
        let (status, page) = curator.get(&path);
        assert_eq!(status, 200, "{path}: {page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || page.contains("%3Cscript%3Ealert(1)%3C/script%3E"),
            "{path}: {page}"
        );
        assert!(!page.contains("<script>alert"), "{path}");
        assert!(!page.contains("href=\"javascript:"), "{path}");
        assert!(!page.contains("<img"), "{path}");
    }
    // By TLP and the date first seen: the hostile indicator was added by
    // hand today, marked clear.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (status, page) = curator.get(&format!("/indicators?tlp=clear&since={today}"));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("href=\"/indicators/{id}\"")),
        "{page}"
    );
    assert!(page.contains("<option value=\"clear\" selected>"), "{page}");
    for other in ["tlp=red".to_string(), format!("until={today}T00:00:00Z")] {
        let (status, page) = curator.get(&format!("/indicators?{other}"));
        assert_eq!(status, 200, "{page}");
        assert!(
            !page.contains(&format!("href=\"/indicators/{id}\"")),
            "{other}: {page}"
        );
    }
    // The same through the API, whose times are RFC 3339.
    let (status, body) = curator.get(&format!(
        "/api/v1/indicators?tlp=clear&since={today}T00:00:00Z&until=9999-01-01T00:00:00Z"
    ));
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["items"][0]["id"], id, "{listed}");
    let (status, body) = curator.get(&format!(
        "/api/v1/indicators?since={today}T00:00:00Z&until={today}T00:00:00Z"
    ));
    assert_eq!(status, 400);
    assert!(body.contains("since must come before until"), "{body}");
    let (status, page) = curator.get("/indicators?tlp=purple");
    assert_eq!(status, 400);
    assert!(page.contains("tlp は clear, green"), "{page}");
    let (status, page) = curator.get("/indicators?category=%3Cscript%3E");
    assert_eq!(status, 400);
    // Japanese unless the operator or the browser chose English.
    assert!(
        page.contains("category は malware-distribution, exploit"),
        "{page}"
    );
    assert!(!page.contains("<script>"));

    // Most recently seen first.
    let (status, page) = nora.get("/cases?sort=seen");
    assert_eq!(status, 200);
    assert!(page.contains(&format!("href=\"/cases/{case}\"")), "{page}");
    assert!(page.contains("<option value=\"seen\" selected>"), "{page}");
    // The queue by feed: the report's feed has the case, another none.
    let (status, page) = nora.get("/cases?feed=Sinkhole-Events+IPv4");
    assert_eq!(status, 200);
    assert!(page.contains(&format!("href=\"/cases/{case}\"")), "{page}");
    let (status, page) = nora.get("/cases?feed=%3Cb%3Eother");
    assert_eq!(status, 200);
    assert!(page.contains("id=\"no-cases\""), "{page}");
    assert!(
        page.contains("<option value=\"&lt;b&gt;other\" selected>"),
        "the unknown feed kept, escaped: {page}"
    );

    // The raw record keeps the family, escaped text in a <pre>.
    let (_, page) = nora.get(&format!("/cases/{case}"));
    assert!(page.contains("<pre class=\"raw\">"), "{page}");
    assert!(page.contains(HOSTILE), "the raw record, as text");

    for (query, says) in [
        ("size=1000000", "size must be a whole number from 1 to 200"),
        ("sort=sideways", "sort must be one of newest, oldest"),
        ("after=-5", "after must be a whole number"),
        ("age=tomorrow", "age must be hours or days"),
        ("sort=seen&after=5", "when sorting by last seen"),
        ("state=%3Cscript%3E", "state must be one of new"),
        ("page=2", "Unknown parameter"),
    ] {
        let r = nora
            .http
            .get(format!("{}/cases?{query}", desk.api()))
            .header(COOKIE, &nora.cookie)
            .header("Accept-Language", "en")
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let page = r.text().unwrap();
        assert!(page.contains("role=\"alert\""), "{query}: {page}");
        assert!(page.contains(says), "{query}: {page}");
        assert!(!page.contains("<script>"), "{query}");
    }
    // The stylesheet is cached long and never sniffed.
    let r = reqwest::blocking::get(format!("{}/static/console.css", desk.api())).unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
}

#[test]
fn a_case_reviewed_and_held_in_chromium_in_both_languages() {
    let desk = Desk::start(
        &[("alice", "analyst,notices-officer,attribution-officer")],
        true,
    );
    // The notice goes out to the real SMTP server.
    let sent = desk.env.ok(&["notices", "send"]);
    let smtp = desk.smtp.as_ref().unwrap();
    eventually(10, "the notice in the mailbox", || !smtp.mails().is_empty());
    let api = desk.api().to_string();
    let case = desk.case()["id"].as_i64().unwrap();

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let args = chromium_args(profile.path(), &["--window-size=1280,1100".into()]);
    let s = driver.session(&args, "ja");
    let shot = |name: &str| {
        let p = s.screenshot_in("console-screenshots", name);
        assert!(std::fs::metadata(&p).unwrap().len() > 5_000, "{sent}");
    };

    // Signing in, with the keyboard's form.
    s.go(&format!("{api}/cases"));
    s.wait_for("input[name=name]");
    shot("sign-in.png");
    s.type_into("input[name=name]", "alice");
    s.type_into("input[name=password]", PASSWORD);
    s.click("button");
    s.wait_for("#pages");
    assert!(s.source().contains("kanki コンソール"));
    assert!(s.has("a.skip[href='#main']"), "a skip link");
    shot("home-ja.png");

    // The queue: the hostile family shown as text, nothing runs.
    s.go(&format!("{api}/cases"));
    s.wait_for("#cases");
    assert!(!s.alert_open());
    assert!(!s.has("a[href^='javascript']"));
    shot("cases-ja.png");
    // Filtered by the report's feed, from the filter form: the case.
    s.choose("#filter select[name=feed]", "Sinkhole-Events IPv4");
    s.click("#apply-filter");
    s.wait_for(&format!("#cases a[href='/cases/{case}']"));
    assert!(
        s.has("#filter select[name=feed] option[value='Sinkhole-Events IPv4'][selected]"),
        "the chosen feed stays chosen"
    );

    // The case: its event with the attribution and its audit record, the
    // notice as delivered.
    s.click(&format!("a[href='/cases/{case}']"));
    s.wait_for("#events");
    let page = s.source();
    assert!(page.contains("監査記録"), "{page}");
    assert!(s.has("#events .event"));
    assert!(s.has("#notices .notice"));
    assert!(page.contains("sent"), "the notice's delivery: {page}");
    assert!(page.contains("<span class=\"subscriber\">S1</span>"));
    assert!(!s.alert_open());
    shot("case-ja.png");

    // Hold it from its page, through the console's form.
    s.choose("#bulk-action", "hold");
    s.type_into("#bulk-reason", "reviewed in the console");
    s.click("#bulk-apply");
    s.wait_for("#bulk-results");
    let held = desk.case();
    assert_eq!(held["held"], true, "{held}");
    assert_eq!(held["hold_reason"], "reviewed in the console");

    // Who held this address, in Japanese.
    s.go(&format!("{api}/who"));
    s.wait_for("form#who");
    shot("who-ja.png");

    // The switch: English, remembered for the operator.
    s.click("#lang-switch");
    eventually(10, "the English page", || {
        s.source().contains("Who held this address")
    });
    shot("who-en.png");
    s.go(&format!("{api}/"));
    s.wait_for("#pages");
    assert!(s.source().contains("kanki console"));
    shot("home-en.png");
    s.go(&format!("{api}/cases"));
    s.wait_for("#cases");
    shot("cases-en.png");
    s.go(&format!("{api}/cases/{case}"));
    s.wait_for("#events");
    shot("case-en.png");
    // An out-of-range query: a clear message on the page.
    s.go(&format!("{api}/cases?size=0"));
    s.wait_for("[role=alert]");
    assert!(
        s.source()
            .contains("size must be a whole number from 1 to 200")
    );
    shot("cases-bad-query-en.png");
    // The language stays English after signing in again elsewhere.
    let alice = sign_in(&api, "alice");
    assert!(alice.get("/").1.contains("lang=\"en\""));
}

/// The audit log page: an auditor finds an officer's lookup by operator,
/// action and what it mentions, verifies the chain (the same head as the
/// API's) and exports the records found as JSON; an operator without the
/// auditor's role has no such page, and its routes refuse.
#[test]
fn an_auditor_searches_the_log_verifies_the_chain_and_exports_what_it_found() {
    let desk = Desk::start(
        &[("otto", "attribution-officer"), ("aud", "auditor")],
        false,
    );
    let case = desk.case()["id"].as_i64().unwrap().to_string();
    let otto = sign_in(desk.api(), "otto");
    let (status, page) = otto.post(
        "/who",
        &[
            ("address", "198.51.100.7"),
            ("ground", "emergency-evacuation"),
            ("purpose", "bot seen by the sinkhole"),
            ("case", &case),
        ],
        true,
    );
    assert_eq!(status, 200, "{page}");
    let (status, page) = otto.post(
        "/who",
        &[
            ("address", "198.51.100.7"),
            ("ground", "emergency-evacuation"),
            ("purpose", "bot seen again"),
            ("case", &case),
        ],
        true,
    );
    assert_eq!(status, 200, "{page}");
    let (_, home) = otto.get("/");
    assert!(!home.contains("href=\"/audit\""), "{home}");
    assert_eq!(otto.get("/audit").0, 403);
    assert_eq!(otto.get("/audit/verify").0, 403);

    let aud = sign_in(desk.api(), "aud");
    let (_, home) = aud.get("/");
    assert!(home.contains("href=\"/audit\""), "{home}");
    let (status, page) = aud.get("/audit?actor=otto&action=who");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<td>otto</td>") && page.contains("bot seen by the sinkhole"),
        "{page}"
    );
    // One a page: the newest lookup first, the older one on the next page.
    let (_, first) = aud.get("/audit?actor=otto&action=who&size=1");
    assert!(
        first.contains("bot seen again") && !first.contains("bot seen by the sinkhole"),
        "{first}"
    );
    let older = first
        .split("id=\"older\" rel=\"next\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let (status, second) = aud.get(&older);
    assert_eq!(status, 200, "{second}");
    assert!(second.contains("bot seen by the sinkhole"), "{second}");
    let (_, page) = aud.get("/audit?mentions=198.51.100.7&ground=emergency-evacuation");
    assert!(page.contains("bot seen by the sinkhole"), "{page}");
    // By a text of the purpose, in the page and through the API.
    let (_, page) = aud.get("/audit?purpose=seen+again");
    assert!(
        page.contains("bot seen again") && !page.contains("bot seen by the sinkhole"),
        "{page}"
    );
    let (_, json) = aud.get("/api/v1/audit?purpose=seen%20again");
    let records: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(records[0]["purpose"], "bot seen again");
    let (_, page) = aud.get("/audit?actor=nobody");
    assert!(
        page.contains("id=\"none\"") && !page.contains("bot seen by the sinkhole"),
        "{page}"
    );
    let (status, page) = aud.get("/audit?since=yesterday&ground=whim");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("since") && page.contains("ground"), "{page}");

    // The export link gives the records found, as the API does.
    let (_, page) = aud.get(&older);
    let href = page
        .split("id=\"export\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(href.starts_with("/api/v1/audit?"), "{href}");
    let (status, json) = aud.get(&href);
    assert_eq!(status, 200, "{json}");
    let records: Value = serde_json::from_str(&json).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1, "{json}");
    assert_eq!(records[0]["purpose"], "bot seen by the sinkhole");
    assert_eq!(records[0]["actor"], "otto");

    // The chain verified in the console has the API's head.
    let (status, page) = aud.get("/audit/verify");
    assert_eq!(status, 200, "{page}");
    let (_, api) = aud.get("/api/v1/audit/verify");
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["intact"], true, "{api}");
    let head = api["head"].as_str().unwrap();
    assert!(
        page.contains("id=\"intact\"") && page.contains(&format!("id=\"head\">{head}<")),
        "{page}"
    );
    // The check runs in the background (its progress page follows
    // `?check=N`): the same check's result again, and a check that is not
    // the last one said so.
    let (status, again) = aud.get("/audit/verify?check=1");
    assert_eq!(status, 200, "{again}");
    assert!(again.contains(&format!("id=\"head\">{head}<")), "{again}");
    let (status, page) = aud.get("/audit/verify?check=7");
    assert_eq!(status, 404, "{page}");
}

#[test]
fn an_officer_reads_a_subscriber_s_history_and_records_a_withdrawn_consent() {
    let desk = Desk::start(
        &[("otto", "attribution-officer"), ("ann", "analyst")],
        false,
    );
    let case = desk.case()["id"].as_i64().unwrap();

    // Subscriber identities are not an analyst's.
    let ann = sign_in(desk.api(), "ann");
    let (_, home) = ann.get("/");
    assert!(!home.contains("href=\"/subscribers\""), "{home}");
    assert_eq!(ann.get("/subscribers").0, 403);
    assert_eq!(ann.get("/subscribers/S1").0, 403);
    assert_eq!(
        ann.post(
            "/subscribers/S1/consent",
            &[("granted", "no"), ("channel", "phone")],
            true
        )
        .0,
        403
    );

    let otto = sign_in(desk.api(), "otto");
    assert_eq!(otto.post("/language", &[("lang", "en")], true).0, 303);
    let (_, home) = otto.get("/");
    assert!(home.contains("href=\"/subscribers\""), "{home}");
    let (status, list) = otto.get("/subscribers");
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("href=\"/subscribers/S1\""), "{list}");
    let r = otto
        .http
        .get(format!("{}/subscribers?id=S1", desk.api()))
        .header(COOKIE, &otto.cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/subscribers/S1");

    // The page: identity, consent, the address held, the case.
    let (status, page) = otto.get("/subscribers/S1");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"email\">s1@example.jp<"), "{page}");
    assert!(page.contains("id=\"consent\">given<"), "{page}");
    assert!(
        page.contains("<code>198.51.100.7/32</code>") && page.contains("held now"),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/cases/{case}\"")), "{page}");
    assert!(page.contains("Not in the walled garden."), "{page}");

    // A withdrawal by phone: without the session's token it is refused and
    // changes nothing; with it, it is recorded and the page shows it.
    let withdraw = [("granted", "no"), ("channel", "phone")];
    assert_eq!(
        otto.post("/subscribers/S1/consent", &withdraw, false).0,
        403
    );
    let (_, api) = otto.get("/api/v1/subscribers/S1");
    assert_eq!(
        serde_json::from_str::<Value>(&api).unwrap()["consent"],
        true
    );
    let r = otto
        .http
        .post(format!("{}/subscribers/S1/consent", desk.api()))
        .header(COOKIE, &otto.cookie)
        .form(&[
            ("granted", "no"),
            ("channel", "phone"),
            ("csrf_token", otto.csrf.as_str()),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let (_, api) = otto.get("/api/v1/subscribers/S1");
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["consent"], false, "{api}");
    let last = api["consent_history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["channel"].as_str(), last["actor"].as_str()),
        (Some("phone"), Some("otto"))
    );
    let (_, page) = otto.get("/subscribers/S1");
    assert!(page.contains("id=\"consent\">not given<"), "{page}");
    assert!(
        page.contains("<td>withdrawn</td><td>phone</td><td>otto</td>"),
        "{page}"
    );
    assert!(page.contains("Record the consent given"), "{page}");

    // Bad input: a clear message each.
    let (status, page) = otto.post(
        "/subscribers/S1/consent",
        &[("granted", "maybe"), ("channel", "phone")],
        true,
    );
    assert_eq!(status, 400, "{page}");
    let (status, page) = otto.post(
        "/subscribers/S1/consent",
        &[("granted", "yes"), ("channel", "carrier pigeon")],
        true,
    );
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("phone, counter"), "{page}");
    let (status, page) = otto.get("/subscribers/S1?after=yesterday&size=0");
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("after must be") && page.contains("size must be"),
        "{page}"
    );
    let (status, page) = otto.get("/subscribers/S9");
    assert_eq!(status, 404, "{page}");

    // Each view is in the audit log, under the officer's name.
    let views = desk
        .env
        .ok(&["audit", "show", "--action", "view-subscriber", "--json"]);
    let records: Vec<Value> = views
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.len() >= 2, "{views}");
    assert!(records.iter().all(|r| r["actor"] == "otto"), "{views}");
}

#[test]
fn an_administrator_disables_sets_roles_revokes_and_reads_the_redacted_configuration() {
    let desk = Desk::start_with(
        &[
            ("ada", "administrator"),
            ("ann", "analyst"),
            ("vic", "viewer"),
        ],
        false,
        "\n[[radius.nas]]\naddress = \"192.0.2.1\"\nsecret = \"nas-shared-secret-do-not-show\"\n",
    );
    let api = desk.api();
    let token = desk
        .env
        .ok(&[
            "tokens",
            "create",
            "--operator",
            "ann",
            "--name",
            "ann-scripts",
        ])
        .trim()
        .to_string();
    let token_id = token.split('_').nth(1).unwrap().to_string();
    let with_token = |path: &str| {
        client()
            .get(format!("{api}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with_token("/api/v1/cases"), 200);

    // Administration is the administrator's alone.
    let ann = sign_in(api, "ann");
    let (_, home) = ann.get("/");
    assert!(!home.contains("href=\"/admin\""), "{home}");
    assert_eq!(ann.get("/admin").0, 403);
    assert_eq!(ann.get("/admin/config").0, 403);
    assert_eq!(
        ann.post("/admin/tokens/x/revoke", &[], true).0,
        403,
        "an analyst cannot revoke"
    );

    let ada = sign_in(api, "ada");
    assert_eq!(ada.post("/language", &[("lang", "en")], true).0, 303);
    let (_, home) = ada.get("/");
    assert!(home.contains("href=\"/admin\""), "{home}");
    let (status, page) = ada.get("/admin");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<td>ann</td>") && page.contains("<td>vic</td>"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<code>{token_id}</code>")) && page.contains("ann-scripts"),
        "{page}"
    );
    assert!(!page.contains(&token), "a token's secret is never shown");

    // Disabling ann ends her session and stops her token, at once; without
    // the session's CSRF token nothing changes.
    assert_eq!(
        ada.post(
            "/admin/operators/ann/disabled",
            &[("disabled", "yes")],
            false
        )
        .0,
        403
    );
    assert_eq!(ann.get("/cases").0, 200);
    let (status, page) = ada.post(
        "/admin/operators/ann/disabled",
        &[("disabled", "yes")],
        true,
    );
    assert_eq!(status, 303, "{page}");
    assert_eq!(ann.get("/cases").0, 303, "her session ended: to sign-in");
    assert_eq!(with_token("/api/v1/cases"), 401);
    let (_, page) = ada.get("/admin");
    assert!(page.contains("<td class=\"state\">disabled</td>"), "{page}");
    let (status, _) = ada.post("/admin/operators/ann/disabled", &[("disabled", "no")], true);
    assert_eq!(status, 303);
    assert_eq!(with_token("/api/v1/cases"), 200, "enabled again");

    // Roles: one field per role checked.
    let (status, page) = ada.post(
        "/admin/operators/vic/roles",
        &[("role", "viewer"), ("role", "list-curator")],
        true,
    );
    assert_eq!(status, 303, "{page}");
    let (_, ops) = ada.get("/api/v1/operators");
    let ops: Value = serde_json::from_str(&ops).unwrap();
    let vic = ops["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "vic")
        .unwrap()
        .clone();
    assert_eq!(
        vic["roles_list"],
        serde_json::json!(["viewer", "list-curator"]),
        "{vic}"
    );
    let (status, page) = ada.post("/admin/operators/vic/roles", &[], true);
    assert_eq!(status, 400, "no role: {page}");

    // No administrator locks themselves out.
    let (status, page) = ada.post(
        "/admin/operators/ada/disabled",
        &[("disabled", "yes")],
        true,
    );
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("cannot disable their own account"), "{page}");
    let (status, page) = ada.post("/admin/operators/ada/roles", &[("role", "viewer")], true);
    assert_eq!(status, 422, "{page}");
    let (status, page) = ada.post(
        "/admin/operators/nobody/disabled",
        &[("disabled", "yes")],
        true,
    );
    assert_eq!(status, 404, "{page}");

    // Revoking the token stops it; the list says so and offers no button.
    let (status, page) = ada.post(&format!("/admin/tokens/{token_id}/revoke"), &[], true);
    assert_eq!(status, 303, "{page}");
    assert_eq!(with_token("/api/v1/cases"), 401);
    let (_, page) = ada.get("/admin");
    assert!(page.contains("<td class=\"state\">revoked</td>"), "{page}");
    assert!(
        !page.contains(&format!("/admin/tokens/{token_id}/revoke")),
        "{page}"
    );

    // Every change is in the audit log under the administrator's name.
    for action in [
        "account-disable",
        "account-enable",
        "account-roles",
        "token-revoke",
    ] {
        let out = desk
            .env
            .ok(&["audit", "show", "--action", action, "--json"]);
        let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(r["actor"], "ada", "{action}: {out}");
    }

    // The configuration in effect, the NAS secret redacted.
    let (status, page) = ada.get("/admin/config");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("192.0.2.1"), "{page}");
    assert!(page.contains("(redacted)"), "{page}");
    assert!(!page.contains("nas-shared-secret-do-not-show"), "{page}");
    let (status, json) = ada.get("/api/v1/config");
    assert_eq!(status, 200);
    assert!(!json.contains("nas-shared-secret-do-not-show"), "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["radius"]["nas"][0]["secret"], "(redacted)");
}

/// Feeds and sensors: a viewer sees each feed's last run with its rejects,
/// the reports ingested from the watched directory and the sensor's
/// counters; a list curator runs a feed now; an operator uploads a report
/// in Chromium and sees its progress and its counts. Screenshots of the
/// pages added with it, in both languages.
#[test]
fn feeds_runs_reports_and_the_sensor_at_a_glance_and_an_upload_in_chromium() {
    let files = tempfile::tempdir().unwrap();
    let list = files.path().join("list.txt");
    std::fs::write(&list, "bad.example\nworse.example\nnot a name at all!\n").unwrap();
    let watch = files.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let sensor_port = common::free_port();
    let all_roles =
        "viewer,analyst,attribution-officer,list-curator,notices-officer,auditor,administrator";
    let desk = Desk::start_with(
        &[
            ("vic", "viewer"),
            ("lena", "list-curator"),
            ("root", all_roles),
        ],
        false,
        &format!(
            "\n[[feeds]]\nname = \"local-list\"\nformat = \"plain\"\npath = \"{}\"\nevery = \"1h\"\n\n[removal]\nwatch_dir = \"{}\"\n\n[sensor]\nlisten = [\"127.0.0.1:{sensor_port}\"]\n",
            list.display(),
            watch.display()
        ),
    );
    let api = desk.api().to_string();

    // A viewer: the feed's first run, its rejected row by reason; no
    // button, no upload.
    let vic = sign_in(&api, "vic");
    assert_eq!(vic.post("/language", &[("lang", "en")], true).0, 303);
    let feeds = |s: &Signed| -> Value { serde_json::from_str(&s.get("/api/v1/feeds").1).unwrap() };
    eventually(20, "the feed's first run", || {
        feeds(&vic)["feeds"][0]["last_import"]["rows_read"] == 3
    });
    let (status, page) = vic.get("/feeds");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<th scope=\"row\">local-list</th>"), "{page}");
    assert!(page.contains("3 read: 2 added"), "{page}");
    let state = feeds(&vic);
    let rejects = state["feeds"][0]["rejects"].as_object().unwrap();
    assert_eq!(
        rejects.values().filter_map(Value::as_u64).sum::<u64>(),
        1,
        "{state}"
    );
    let reason = rejects.keys().next().unwrap();
    assert!(page.contains(&format!("{reason}: 1")), "{page}");
    assert!(state["feeds"][0]["next_run"].is_string(), "{state}");
    assert!(
        !page.contains("Run now") && !page.contains("id=\"upload-form\""),
        "{page}"
    );
    assert_eq!(vic.post("/feeds/local-list/run", &[], true).0, 403);

    // A report dropped in the watched directory, and a connection to the
    // sensor.
    std::fs::write(
        watch.join("2026-05-01-event4_sinkhole-asn-jp.csv"),
        common::sinkhole_csv(&[("198.51.100.7", "mirai")]),
    )
    .unwrap();
    {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", sensor_port)).unwrap();
        let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    eventually(
        20,
        "the dropped report ingested, the sensor's connection counted",
        || {
            let s = feeds(&vic);
            s["watched"]["done"]["count"] == 1
                && s["ingests"].as_array().unwrap().iter().any(|i| {
                    i["origin"]
                        .as_str()
                        .is_some_and(|o| o.contains("event4_sinkhole"))
                        && i["events"] == 1
                })
                && s["sensor"]["connections"].as_u64() >= Some(1)
        },
    );
    let (_, page) = vic.get("/feeds");
    assert!(
        page.contains("2026-05-01-event4_sinkhole-asn-jp.csv"),
        "{page}"
    );
    assert!(page.contains("id=\"sensor-connections\">"), "{page}");

    // A list curator runs the feed now: the new row is read.
    std::fs::write(
        &list,
        "bad.example\nworse.example\nnot a name at all!\nthird.example\n",
    )
    .unwrap();
    let lena = sign_in(&api, "lena");
    let (_, page) = lena.get("/feeds");
    assert!(page.contains("action=\"/feeds/local-list/run\""), "{page}");
    assert_eq!(lena.post("/feeds/local-list/run", &[], false).0, 403);
    let (status, page) = lena.post("/feeds/local-list/run", &[], true);
    assert_eq!(status, 303, "{page}");
    eventually(20, "the run asked for", || {
        feeds(&lena)["feeds"][0]["last_import"]["rows_read"] == 4
    });
    let (status, page) = lena.post("/feeds/nothing/run", &[], true);
    assert_eq!(status, 404, "{page}");

    // An upload in Chromium, with its progress and its counts.
    let report = files.path().join("2026-05-02-event4_sinkhole-asn-jp.csv");
    std::fs::write(&report, common::sinkhole_csv(&[("198.51.100.7", "emotet")])).unwrap();
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let args = chromium_args(profile.path(), &["--window-size=1280,1100".into()]);
    let s = driver.session(&args, "ja");
    s.go(&format!("{api}/feeds"));
    s.wait_for("input[name=name]");
    s.type_into("input[name=name]", "root");
    s.type_into("input[name=password]", PASSWORD);
    s.click("button");
    s.wait_for("#pages");
    s.go(&format!("{api}/feeds"));
    s.wait_for("#upload-form");
    s.type_into("#report-file", report.to_str().unwrap());
    s.choose("#report-format", "shadowserver");
    s.click("#upload-report");
    eventually(20, "the upload's counts", || {
        s.source().contains(" 1 / 1</span>")
    });
    assert!(!s.alert_open());
    s.wait_for("#ingests");
    eventually(20, "the uploaded report listed", || {
        s.source().contains("2026-05-02-event4_sinkhole-asn-jp.csv")
    });
    let lena = sign_in(&api, "lena");
    let listed: Value =
        serde_json::from_str(&lena.get("/api/v1/indicators?q=worse.example").1).unwrap();
    let indicator = format!("/indicators/{}", listed["items"][0]["id"]);
    let shots = |lang: &str| {
        for (path, css, name) in [
            ("/dashboard", "#charts", "dashboard"),
            ("/indicators", "#add-form", "indicators"),
            (indicator.as_str(), "#history", "indicator"),
            ("/false-positives", "main h1", "false-positives"),
            ("/feeds", "#feeds", "feeds"),
            ("/subscribers", "#subscribers", "subscribers"),
            ("/subscribers/S1", "#bindings", "subscriber"),
            ("/admin", "#operators", "admin"),
            ("/admin/config", "#effective-config", "admin-config"),
            ("/audit", "#records", "audit"),
        ] {
            s.go(&format!("{api}{path}"));
            s.wait_for(css);
            assert!(!s.alert_open());
            let p = s.screenshot_in("console-screenshots", &format!("{name}-{lang}.png"));
            assert!(std::fs::metadata(&p).unwrap().len() > 5_000);
        }
    };
    shots("ja");
    s.click("#lang-switch");
    eventually(10, "the English page", || s.source().contains("Audit log"));
    shots("en");
}

/// The dashboard: a report, its case, its notice through a real SMTP
/// server and its acknowledgement each show in the charts and the
/// outcomes, as the page, the API and the CSV and SVG exports say alike.
#[test]
fn the_dashboard_counts_a_report_its_case_its_notice_and_its_acknowledgement() {
    let radius = common::free_port();
    let desk = Desk::start_with(
        &[("vic", "viewer"), ("aud", "auditor")],
        true,
        &format!(
            "\n[radius]\nlisten = \"127.0.0.1:{radius}\"\n\n[[radius.nas]]\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n"
        ),
    );
    desk.hostile_indicator();
    let vic = sign_in(desk.api(), "vic");
    assert_eq!(vic.post("/language", &[("lang", "en")], true).0, 303);
    let aud = sign_in(desk.api(), "aud");
    assert_eq!(aud.get("/dashboard").0, 403, "counts are not the auditor's");
    let dashboard = |range: &str| -> Value {
        let (status, body) = vic.get(&format!("/api/v1/dashboard?range={range}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let total = |d: &Value, chart: &str, label: &str| -> u64 {
        d["charts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == chart)
            .unwrap()["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l[0] == label)
            .flat_map(|l| l[1].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()))
            .sum()
    };
    let d = dashboard("day");
    assert_eq!(total(&d, "events", "shadowserver"), 1, "{d}");
    let severity = desk.case()["severity"].as_str().unwrap().to_string();
    assert_eq!(total(&d, "cases", &format!("opened: {severity}")), 1, "{d}");
    assert_eq!(total(&d, "notices", "sent: mail"), 0);
    assert_eq!(d["outcomes"]["infected_subscribers"], 1);
    // The report's row through each ingest stage, counted as it went.
    let stage = |d: &Value, stage: &str| -> Value {
        d["live"]["rates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["stage"] == stage)
            .unwrap_or_else(|| panic!("{stage}: {d}"))
            .clone()
    };
    for (name, n) in [
        ("read", 1),
        ("rejected", 0),
        ("attributed", 1),
        ("stored", 1),
        ("cases-opened", 1),
        ("mailed", 0),
    ] {
        assert_eq!(stage(&d, name)["total"], n, "{name}: {d}");
    }
    let (_, metrics) = vic.get("/metrics");
    assert!(
        metrics.contains("kanki_ingest_events_total{stage=\"stored\"} 1"),
        "{metrics}"
    );
    assert!(
        d["list"]["by_status_category"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "active" && r[2] == 1),
        "{d}"
    );

    // The notice, sent through the SMTP server, then acknowledged.
    desk.env.ok(&["notices", "send"]);
    let smtp = desk.smtp.as_ref().unwrap();
    eventually(10, "the notice in the mailbox", || !smtp.mails().is_empty());
    let case = desk.case()["id"].as_i64().unwrap();
    let full: Value = client()
        .get(format!("{}/api/v1/cases/{case}", desk.api()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let reference = full["notices"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .post(format!(
            "{}/api/v1/notices/{reference}/acknowledge",
            desk.api()
        ))
        .json(&serde_json::json!({}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let d = dashboard("hour");
    assert_eq!(total(&d, "notices", "sent: mail"), 1, "{d}");
    assert_eq!(total(&d, "notices", "acknowledged"), 1, "{d}");
    assert_eq!(d["outcomes"]["acknowledgement_rate"], 1.0, "{d}");

    // The page: the same figures, each chart with its exports.
    let (status, page) = vic.get("/dashboard?range=week");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"acknowledgement-rate\">100%<"), "{page}");
    assert!(page.contains("aria-current=\"page\">Last week<"), "{page}");
    for chart in ["events", "rejected", "cases", "notices", "warning"] {
        assert!(
            page.contains(&format!("id=\"chart-{chart}\"")),
            "{chart}: {page}"
        );
        assert!(
            page.contains(&format!("src=\"/dashboard/{chart}.svg?range=week\"")),
            "{page}"
        );
    }
    let (status, csv) = vic.get("/dashboard/notices.csv?range=week");
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with("start,label,count\n"), "{csv}");
    let sent: u64 = csv
        .lines()
        .filter(|l| l.contains(",\"sent: mail\","))
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent, 1, "{csv}");
    let r = vic
        .http
        .get(format!("{}/dashboard/cases.svg?range=month", desk.api()))
        .header(COOKIE, &vic.cookie)
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
    assert!(!svg.contains("<script"), "{svg}");

    // Out of range: a clear message; an unknown chart: not found.
    let (status, page) = vic.get("/dashboard?range=year");
    assert_eq!(status, 400, "{page}");
    assert!(
        page.contains("range must be one of hour, day, week, month"),
        "{page}"
    );
    assert_eq!(vic.get("/dashboard/secrets.csv").0, 404);
    let (status, _) = vic.get("/api/v1/dashboard?range=year");
    assert_eq!(status, 400);

    // A RADIUS request: the server's counters are kept per 5 minutes in
    // the store (every 30 s), and charted.
    common::radclient(
        radius,
        "Acct-Status-Type = Start\nUser-Name = \"S1\"\nAcct-Session-Id = \"sess-1\"\nNAS-IP-Address = 127.0.0.1\nFramed-IP-Address = 192.0.2.10\n",
    );
    eventually(45, "the RADIUS request in the dashboard", || {
        total(&dashboard("hour"), "radius", "radius-requests") == 1
    });
    let (_, csv) = vic.get("/dashboard/radius.csv?range=day");
    assert!(csv.contains(",\"radius-requests\",1\n"), "{csv}");

    // The live rates: sampled every 5 s, so by now over at least 10 s.
    eventually(20, "a rate over ten seconds", || {
        stage(&dashboard("hour"), "stored")["per_second_5m"].is_f64()
    });
    let (_, page) = vic.get("/dashboard");
    let row = page
        .split("<tr id=\"rate-ingest-stored\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("{page}"));
    assert!(row.contains("Ingest: events stored"), "{row}");
    assert!(row.contains("<td class=\"total\">1</td>"), "{row}");
}

/// The console in Firefox (ESR, headless, through geckodriver): signing
/// in with the keyboard, every page of an operator holding every role
/// shown with nothing run from a hostile value, a case held through its
/// page's form, a report uploaded with its progress bar, and the language
/// switched; a screenshot of each page.
#[test]
fn the_console_works_in_firefox_page_by_page() {
    let all_roles =
        "viewer,analyst,attribution-officer,list-curator,notices-officer,auditor,administrator";
    let desk = Desk::start(&[("root", all_roles)], false);
    let indicator = desk.hostile_indicator();
    let case = desk.case()["id"].as_i64().unwrap();
    let api = desk.api().to_string();
    let files = tempfile::tempdir().unwrap();
    let report = files.path().join("2026-05-03-event4_sinkhole-asn-jp.csv");
    std::fs::write(&report, common::sinkhole_csv(&[("198.51.100.7", "qakbot")])).unwrap();

    let driver = Driver::start_firefox();
    let s = driver.session(&[], "en");
    s.go(&format!("{api}/"));
    s.wait_for("input[name=name]");
    s.type_into("input[name=name]", "root");
    s.type_into("input[name=password]", &format!("{PASSWORD}{ENTER}"));
    s.wait_for("#pages");
    let pages = [
        ("/", "#pages", "home"),
        ("/dashboard", "#charts", "dashboard"),
        ("/cases", "#cases", "cases"),
        (&format!("/cases/{case}"), "#events", "case"),
        ("/indicators", "#indicators", "indicators"),
        (&format!("/indicators/{indicator}"), "main h1", "indicator"),
        ("/false-positives", "main h1", "false-positives"),
        ("/who", "form#who", "who"),
        ("/feeds", "#feeds", "feeds"),
        ("/subscribers", "#subscribers", "subscribers"),
        ("/subscribers/S1", "#bindings", "subscriber"),
        ("/audit", "#records", "audit"),
        ("/admin", "#operators", "admin"),
        ("/admin/config", "#effective-config", "admin-config"),
    ];
    for (path, css, name) in pages {
        s.go(&format!("{api}{path}"));
        s.wait_for(css);
        assert!(!s.alert_open(), "{path}");
        assert!(!s.has("a[href^='javascript']"), "{path}");
        let p = s.screenshot_in("console-screenshots", &format!("firefox-{name}-en.png"));
        assert!(std::fs::metadata(&p).unwrap().len() > 5_000, "{path}");
    }

    // A case held from its page's form.
    s.go(&format!("{api}/cases/{case}"));
    s.wait_for("#bulk-action");
    s.choose("#bulk-action", "hold");
    s.type_into("#bulk-reason", "held in Firefox");
    s.click("#bulk-apply");
    s.wait_for("#bulk-results");
    assert_eq!(desk.case()["hold_reason"], "held in Firefox");

    // A report uploaded with its progress bar (a request from the page's
    // script, which the page's policy allows to this site alone).
    s.go(&format!("{api}/feeds"));
    s.wait_for("#upload-form");
    s.type_into("#report-file", report.to_str().unwrap());
    s.choose("#report-format", "shadowserver");
    s.click("#upload-report");
    eventually(20, "the upload's counts in Firefox", || {
        s.source().contains(" 1 / 1</span>")
    });

    // Japanese, remembered.
    s.go(&format!("{api}/dashboard"));
    s.wait_for("#lang-switch");
    s.click("#lang-switch");
    eventually(10, "the Japanese page", || {
        s.source().contains("ダッシュボード")
    });
    let p = s.screenshot_in("console-screenshots", "firefox-dashboard-ja.png");
    assert!(std::fs::metadata(&p).unwrap().len() > 5_000);
}

/// A notices officer releases a case's subscriber from the walled garden
/// from the queue's bulk form: under the ground they were put in under,
/// with the reason given, audited under the officer's name.
#[test]
fn a_case_s_subscriber_is_released_from_the_walled_garden_from_the_queue() {
    let desk = Desk::start(&[("nora", "notices-officer")], false);
    let case = desk.case()["id"].as_i64().unwrap().to_string();
    let r = client()
        .post(format!("{}/api/v1/garden/S1", desk.api()))
        .json(&serde_json::json!({"ground": "emergency-evacuation", "reason": "bot talking to its C&C"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let garden = || -> Value {
        client()
            .get(format!("{}/api/v1/garden", desk.api()))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(garden().as_array().unwrap().len(), 1);

    let nora = sign_in(desk.api(), "nora");
    assert_eq!(nora.post("/language", &[("lang", "en")], true).0, 303);
    let (_, queue) = nora.get("/cases");
    assert!(queue.contains("value=\"garden-release\""), "{queue}");
    let (status, page) = nora.post(
        "/cases/actions",
        &[
            ("case", &case),
            ("action", "garden-release"),
            ("reason", ""),
        ],
        true,
    );
    assert_eq!(status, 400, "a release gives its reason: {page}");
    assert_eq!(garden().as_array().unwrap().len(), 1);
    let (status, page) = nora.post(
        "/cases/actions",
        &[
            ("case", &case),
            ("action", "garden-release"),
            ("reason", "subscriber cleaned up, confirmed by phone"),
        ],
        true,
    );
    assert_eq!(status, 200, "{page}");
    assert!(garden().as_array().unwrap().is_empty());
    let out = desk
        .env
        .ok(&["audit", "show", "--action", "garden-leave", "--json"]);
    let r: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["actor"], "nora", "{out}");
    assert_eq!(r["ground"], "emergency-evacuation", "{out}");
    assert_eq!(
        r["purpose"], "subscriber cleaned up, confirmed by phone",
        "{out}"
    );
    // Again: not in the garden any more, said so.
    let (status, page) = nora.post(
        "/cases/actions",
        &[
            ("case", &case),
            ("action", "garden-release"),
            ("reason", "again"),
        ],
        true,
    );
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("not in the walled garden"), "{page}");
}

/// A notices officer escalates a case from the queue at once (the removal
/// loop's rule picks the walled garden for a consenting subscriber), with
/// a reason in its history; a second escalation is refused.
#[test]
fn a_case_is_escalated_from_the_queue_into_the_walled_garden() {
    let desk = Desk::start(&[("nora", "notices-officer")], false);
    let case = desk.case()["id"].as_i64().unwrap().to_string();
    let nora = sign_in(desk.api(), "nora");
    assert_eq!(nora.post("/language", &[("lang", "en")], true).0, 303);
    let (status, page) = nora.post(
        "/cases/actions",
        &[("case", &case), ("action", "escalate"), ("reason", "")],
        true,
    );
    assert_eq!(status, 422, "an escalation gives its reason: {page}");
    assert_eq!(desk.case()["state"], "new");
    let (status, page) = nora.post(
        "/cases/actions",
        &[
            ("case", &case),
            ("action", "escalate"),
            ("reason", "the C&C traffic doubled overnight"),
        ],
        true,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(desk.case()["state"], "escalated");
    let garden: Value = client()
        .get(format!("{}/api/v1/garden", desk.api()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(garden[0]["subscriber"], "S1", "{garden}");
    let (_, page) = nora.get(&format!("/cases/{case}"));
    assert!(
        page.contains("nora</") || page.contains("· nora ·"),
        "the history names the officer: {page}"
    );
    assert!(
        page.contains("the C&amp;C traffic doubled overnight"),
        "{page}"
    );
    let (status, page) = nora.post(
        "/cases/actions",
        &[("case", &case), ("action", "escalate"), ("reason", "again")],
        true,
    );
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("escalated already"), "{page}");
}

/// A notices officer sends a case's notice now from the queue: it reaches
/// the SMTP server at once, and its history names the officer and the
/// reason; a held case is refused.
#[test]
fn a_notice_is_sent_now_from_the_queue_to_the_smtp_server() {
    let desk = Desk::start(&[("nora", "notices-officer")], true);
    let case = desk.case()["id"].as_i64().unwrap().to_string();
    let nora = sign_in(desk.api(), "nora");
    assert_eq!(nora.post("/language", &[("lang", "en")], true).0, 303);
    let smtp = desk.smtp.as_ref().unwrap();
    assert!(smtp.mails().is_empty());
    let (status, page) = nora.post(
        "/cases/actions",
        &[
            ("case", &case),
            ("action", "send-now"),
            ("reason", "subscriber asked for the notice again"),
        ],
        true,
    );
    assert_eq!(status, 200, "{page}");
    eventually(10, "the notice in the mailbox", || smtp.mails().len() == 1);
    assert_eq!(desk.case()["state"], "notified");
    let (_, page) = nora.get(&format!("/cases/{case}"));
    assert!(
        page.contains("subscriber asked for the notice again"),
        "{page}"
    );
    // Held: no notice goes, now or later, until released.
    let hold = [
        ("case", case.as_str()),
        ("action", "hold"),
        ("reason", "on the phone"),
    ];
    assert_eq!(nora.post("/cases/actions", &hold, true).0, 200);
    let (status, page) = nora.post(
        "/cases/actions",
        &[("case", &case), ("action", "send-now"), ("reason", "again")],
        true,
    );
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("held"), "{page}");
    assert_eq!(smtp.mails().len(), 1);
}

/// A curator adds an indicator by hand with a reason and delists it from
/// its page; the page's history, and the API's, name the curator for each
/// change. An analyst reads the page without the forms, and a bad status
/// gets a clear message.
#[test]
fn a_curator_adds_and_delists_an_indicator_and_its_history_names_who() {
    let desk = Desk::start(&[("cora", "list-curator"), ("ana", "analyst")], false);
    let cora = sign_in(desk.api(), "cora");
    let (status, page) = cora.get("/indicators");
    assert_eq!(status, 200);
    assert!(page.contains("id=\"add-form\""), "{page}");

    // Added by hand: to the indicator's page.
    let r = cora
        .http
        .post(format!("{}/indicators", desk.api()))
        .header(COOKIE, &cora.cookie)
        .form(&[
            ("value", "dropper.example"),
            ("category", "malware-distribution"),
            ("reason", "seen in our honeypot"),
            ("csrf_token", cora.csrf.as_str()),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let at = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(at.starts_with("/indicators/"), "{at}");
    let id: i64 = at["/indicators/".len()..].parse().unwrap();
    let (_, page) = cora.get(&at);
    assert!(page.contains("id=\"status-form\""), "{page}");
    assert!(page.contains("id=\"history\""), "{page}");
    assert!(
        page.contains(
            "<td>add</td><td class=\"actor\">cora</td><td>operator: seen in our honeypot</td>"
        ),
        "{page}"
    );

    // Delisted with a reason: the page says so, newest change first.
    let (status, _) = cora.post(
        &format!("/indicators/{id}/status"),
        &[("status", "delisted"), ("reason", "the site is clean now")],
        true,
    );
    assert_eq!(status, 303);
    let (_, page) = cora.get(&at);
    assert!(page.contains("<dd id=\"status\">delisted"), "{page}");
    let delisted = page.find("<td>delisted</td><td class=\"actor\">cora</td>");
    let added = page.find("<td>add</td>");
    assert!(delisted.is_some() && delisted < added, "{page}");

    // The API gives the same history.
    let history: Value = cora
        .http
        .get(format!("{}/api/v1/indicators/{id}/history", desk.api()))
        .header(COOKIE, &cora.cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let items = history["items"].as_array().unwrap();
    assert_eq!(items[0]["change"], "delisted", "{history}");
    assert_eq!(items[0]["actor"], "cora");
    assert_eq!(items[0]["detail"], "the site is clean now");
    assert_eq!(items[1]["change"], "add");

    // Only the statuses an operator sets, and always a reason.
    for (fields, says) in [
        (
            [("status", "expired"), ("reason", "x")],
            "Choose delisted, false-positive or active.",
        ),
        ([("status", "active"), ("reason", " ")], "Give a reason"),
    ] {
        let r = cora
            .http
            .post(format!("{}/indicators/{id}/status", desk.api()))
            .header(COOKIE, &cora.cookie)
            .header("Accept-Language", "en")
            .form(&[fields[0], fields[1], ("csrf_token", cora.csrf.as_str())])
            .send()
            .unwrap();
        assert_eq!(r.status(), 400);
        let page = r.text().unwrap();
        assert!(page.contains(says), "{page}");
    }
    let (_, page) = cora.get(&at);
    assert!(page.contains("<dd id=\"status\">delisted"), "unchanged");

    // An analyst reads the page and its history, without the forms; the
    // routes refuse.
    let ana = sign_in(desk.api(), "ana");
    let (status, page) = ana.get(&at);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"history\""));
    assert!(!page.contains("id=\"status-form\""), "{page}");
    assert!(!ana.get("/indicators").1.contains("id=\"add-form\""));
    let (status, _) = ana.post(
        &format!("/indicators/{id}/status"),
        &[("status", "active"), ("reason", "mine")],
        true,
    );
    assert_eq!(status, 403);
}
