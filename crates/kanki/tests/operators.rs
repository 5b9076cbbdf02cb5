//! Operators, roles and tokens against a running `kanki serve`: the role
//! matrix over every route of docs/openapi.json, refused credentials, and
//! the audit log naming the authenticated caller.

mod common;

use std::time::Duration;

use common::{Env, anonymous_client, eventually, repo};
use kanki_operators::{Permission, Role};
use serde_json::{Value, json};

/// Adds an operator holding `roles` (a machine account) and returns a new
/// token of it.
fn token_for(env: &Env, name: &str, roles: &str, extra: &[&str]) -> String {
    env.ok(&[
        "operators",
        "add",
        name,
        "--kind",
        "machine",
        "--roles",
        roles,
    ]);
    let mut args = vec!["tokens", "create", "--operator", name, "--name", "test"];
    args.extend_from_slice(extra);
    env.ok(&args).trim().to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A path of docs/openapi.json with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{host}", "nothing.example")
        .replace("{format}", "hosts")
        .replace("{reference}", "KNOWN-TO-NOBODY")
        .replace("{subscriber}", "S-NOBODY")
        .replace("{name}", "nobody")
        .replace("{file}", "events.csv")
}

#[test]
fn every_route_answers_each_role_exactly_as_the_matrix_says() {
    let env = Env::new("");
    let tokens: Vec<(Role, String)> = Role::ALL
        .iter()
        .map(|r| (*r, token_for(&env, r.as_str(), r.as_str(), &[])))
        .collect();
    let server = env.serve();
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap())
            .unwrap();
    // Not following redirects: a console page sends a browser without a
    // session to /sign-in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let m = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let needed = kanki_api::auth::permission(&m, path).unwrap_or_else(|| {
                panic!(
                    "{method} {path} is in docs/openapi.json but missing from the permission matrix"
                )
            });
            let url = format!("{}{}", server.api, concrete(path));
            let send = |auth: Option<&str>| {
                let mut r = http.request(
                    reqwest::Method::from_bytes(m.as_str().as_bytes()).unwrap(),
                    &url,
                );
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                if m != axum::http::Method::GET {
                    r = r.json(&json!({}));
                }
                r.send().unwrap().status().as_u16()
            };
            // No credentials.
            let status = send(None);
            if needed == Permission::Public {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} is public but answered {status} without credentials"
                );
            } else if op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "console"))
            {
                assert_eq!(status, 303, "console {method} {path} without credentials");
            } else {
                assert_eq!(status, 401, "{method} {path} without credentials");
            }
            for (role, token) in &tokens {
                let status = send(Some(&bearer(token)));
                if role.permissions().contains(needed) {
                    assert!(
                        status != 401 && status != 403,
                        "{method} {path} ({needed}) refused {role} with {status}"
                    );
                } else {
                    assert_eq!(status, 403, "{method} {path} ({needed}) for {role}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 49, "only {checked} routes walked");
}

fn metric(api: &str, token: &str, name: &str) -> f64 {
    let text = anonymous_client()
        .get(format!("{api}/metrics"))
        .header("Authorization", bearer(token))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn refused_credentials_get_401_and_are_counted() {
    let env = Env::new("[operators]\nrefresh_every = \"100ms\"\n");
    let viewer = token_for(&env, "watcher", "viewer", &[]);
    let elsewhere = env
        .ok(&[
            "tokens",
            "create",
            "--operator",
            "watcher",
            "--name",
            "from elsewhere",
            "--source",
            "192.0.2.0/24",
        ])
        .trim()
        .to_string();
    let brief = env
        .ok(&[
            "tokens",
            "create",
            "--operator",
            "watcher",
            "--name",
            "brief",
            "--expires-in",
            "1s",
        ])
        .trim()
        .to_string();
    let server = env.serve();
    let api = &server.api;
    let http = anonymous_client();
    let status = |auth: &str| {
        http.get(format!("{api}/api/v1/directory"))
            .header("Authorization", auth)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(&bearer(&viewer)), 200);
    assert_eq!(status("Basic dXNlcjpwYXNz"), 401);
    assert_eq!(
        status(&format!("Bearer kanki_0000000000000000_{}", "A".repeat(43))),
        401
    );
    assert_eq!(status(&bearer(&elsewhere)), 401);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(status(&bearer(&brief)), 401);
    // Revoked from the command line, while serve runs.
    let id = &elsewhere["kanki_".len().."kanki_".len() + 16];
    env.ok(&["tokens", "revoke", id]);
    eventually(10, "the revoked token refused", || {
        status(&bearer(&elsewhere)) == 401
            && metric(
                api,
                &viewer,
                "kanki_api_auth_failures_total{reason=\"revoked\"}",
            ) >= 1.0
    });
    for reason in [
        "malformed",
        "unknown-token",
        "source-not-allowed",
        "expired",
    ] {
        assert!(
            metric(
                api,
                &viewer,
                &format!("kanki_api_auth_failures_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason} not counted"
        );
    }
    // The answer says why, and nothing about the token's owner.
    let r = http
        .get(format!("{api}/api/v1/directory"))
        .header("Authorization", bearer(&brief))
        .send()
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"kanki\"");
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"], "the token has expired");
    // A 403 is counted by the permission wanted.
    assert_eq!(
        http.get(format!("{api}/api/v1/audit"))
            .header("Authorization", bearer(&viewer))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert!(
        metric(
            api,
            &viewer,
            "kanki_api_forbidden_total{permission=\"read-audit\"}"
        ) >= 1.0
    );
    // The last use of a token is recorded.
    eventually(10, "last use written", || {
        let list: Value = serde_json::from_str(&env.ok(&["tokens", "list", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "test" && !t["last_used_at"].is_null())
    });
}

fn post(token: &str, url: String, body: Value) -> (u16, Value) {
    let r = anonymous_client()
        .post(url)
        .header("Authorization", bearer(token))
        .header("X-Kanki-Actor", "somebody-else")
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn get(token: &str, url: String) -> Value {
    let r = anonymous_client()
        .get(url)
        .header("Authorization", bearer(token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn token_id(token: &str) -> &str {
    &token["kanki_".len().."kanki_".len() + 16]
}

#[test]
fn the_audit_log_names_the_caller_checks_the_ground_and_records_views() {
    let env = Env::new("");
    let t0 = chrono::Utc::now().timestamp() - 7200;
    let from = chrono::DateTime::from_timestamp(t0 - 3600, 0)
        .unwrap()
        .to_rfc3339();
    env.directory(
        "id,email,language,consent\nS1,s1@example.jp,ja,yes\nS2,s2@example.jp,en,no\n",
        &format!("S1,198.51.100.7/32,{from},\nS2,198.51.100.8/32,{from},\n"),
    );
    let officer = token_for(&env, "officer", "attribution-officer", &[]);
    let analyst = token_for(&env, "ann", "analyst", &[]);
    let auditor = token_for(&env, "reader", "auditor", &[]);
    let server = env.serve();
    let api = &server.api;
    let who = |body: Value| post(&officer, format!("{api}/api/v1/who"), body);

    // The ground is checked.
    let (status, body) = who(json!({
        "address": "198.51.100.7", "ground": "emergency-evacuation",
        "purpose": "seen talking to a C&C server",
    }));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cites the case or the event")
    );
    let (status, _) = who(json!({
        "address": "198.51.100.7", "ground": "emergency-evacuation", "case": 999,
        "purpose": "seen talking to a C&C server",
    }));
    assert_eq!(status, 422);
    let (status, _) = who(json!({
        "address": "198.51.100.7", "ground": "legitimate-business",
        "purpose": "outbound SMTP flood",
    }));
    assert_eq!(status, 422);
    // S2 never consented: consent is no ground to look S2 up.
    let (status, body) = who(json!({
        "address": "198.51.100.8", "ground": "consent", "purpose": "warning",
    }));
    assert_eq!(status, 422, "{body}");
    assert!(!body.to_string().contains("S2"));
    let (status, body) = who(json!({
        "address": "198.51.100.7", "ground": "legitimate-business", "program": "OP25B",
        "purpose": "outbound SMTP flood",
    }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subscriber"], "S1");

    // Ingest through the API, as the analyst: the attributions it makes
    // are the analyst's, and it opens a case for S1.
    let at = chrono::DateTime::from_timestamp(t0, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let report = format!(
        "\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"dst_ip\",\"dst_port\",\"infection\",\"family\",\"tag\"\n\
         \"{at}\",\"tcp\",\"198.51.100.7\",51000,\"203.0.113.1\",80,\"mirai\",\"mirai\",\n"
    );
    let r = anonymous_client()
        .post(format!(
            "{api}/api/v1/events?format=shadowserver&name=2026-05-01-event4_sinkhole-asn-jp.csv"
        ))
        .header("Authorization", bearer(&analyst))
        .body(report)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // Not with a token that lacks the ingest permission.
    let r = anonymous_client()
        .post(format!("{api}/api/v1/events?format=shadowserver"))
        .header("Authorization", bearer(&auditor))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let cases = get(&analyst, format!("{api}/api/v1/cases?subscriber=S1"));
    let case = cases["items"][0]["id"].as_i64().unwrap();
    // The analyst sees S1 by pseudonym, the same in the list and the case,
    // and no address to reach S1 by.
    let pseudonym = cases["items"][0]["subscriber"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pseudonym.starts_with("p-"), "{pseudonym}");
    // Viewing the case, once, leaves one view record.
    let seen = get(
        &analyst,
        format!("{api}/api/v1/cases/{case}?purpose=triage"),
    );
    assert_eq!(seen["case"]["subscriber"], pseudonym.as_str());
    assert!(!seen.to_string().contains("S1"), "{seen}");
    assert!(!seen.to_string().contains("s1@example.jp"), "{seen}");
    let event = seen["events"][0]["id"].as_i64().unwrap();
    let seen_event = get(
        &analyst,
        format!("{api}/api/v1/events/{event}?purpose=triage"),
    );
    assert_eq!(seen_event["attribution"]["subscriber"], pseudonym.as_str());
    // The attribution officer sees who it is; that view is recorded too.
    let identified = get(
        &officer,
        format!("{api}/api/v1/cases/{case}?purpose=prepare the call"),
    );
    assert_eq!(identified["case"]["subscriber"], "S1");
    // An emergency evacuation citing that case is answered.
    let (status, body) = who(json!({
        "address": "198.51.100.7", "ground": "emergency-evacuation", "case": case,
        "purpose": "notify S1",
    }));
    assert_eq!(status, 200, "{body}");

    // Consent revoked through the API, by the officer.
    let (status, _) = post(
        &officer,
        format!("{api}/api/v1/subscribers/S1/consent"),
        json!({"granted": false, "channel": "phone"}),
    );
    assert_eq!(status, 200);

    let records = get(&auditor, format!("{api}/api/v1/audit?limit=1000"));
    let records = records.as_array().unwrap();
    assert!(
        !serde_json::to_string(records)
            .unwrap()
            .contains("somebody-else")
    );
    let officer_actor = format!("officer token {}", token_id(&officer));
    let analyst_actor = format!("ann token {}", token_id(&analyst));
    let of = |action: &str| -> Vec<&Value> {
        records.iter().filter(|r| r["action"] == action).collect()
    };
    let whos = of("who");
    // The refused consent lookup is recorded, naming nobody.
    assert_eq!(whos.len(), 3, "{whos:?}");
    assert!(whos.iter().all(|r| r["actor"] == officer_actor.as_str()));
    assert!(whos[0]["result"].as_str().unwrap().contains("refused"));
    assert!(!whos[0]["result"].as_str().unwrap().contains("S2"));
    assert!(
        whos[2]["input"]
            .as_str()
            .unwrap()
            .contains(&format!("\"case\":{case}"))
    );
    let bulk = of("who-bulk");
    assert_eq!(bulk.len(), 1);
    assert_eq!(bulk[0]["actor"], analyst_actor.as_str());
    let views = of("view-case");
    assert_eq!(views.len(), 2, "{views:?}");
    assert_eq!(views[0]["actor"], analyst_actor.as_str());
    assert_eq!(views[0]["purpose"], "triage");
    assert!(views[0]["input"].as_str().unwrap().contains("S1"));
    assert_eq!(views[1]["actor"], officer_actor.as_str());
    assert_eq!(views[1]["purpose"], "prepare the call");
    assert!(views[1]["input"].as_str().unwrap().contains("S1"));
    let revoked = of("consent-revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["actor"], officer_actor.as_str());
    assert!(revoked[0]["input"].as_str().unwrap().contains("phone"));
    // The import's grant, by the operating-system user.
    let granted = of("consent-grant");
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["actor"], kanki_operators::os_actor().as_str());
    drop(server);

    // Tampering with a consent record is caught.
    assert!(env.ok(&["audit", "verify"]).starts_with("audit log intact"));
    let seq = revoked[0]["seq"].as_i64().unwrap();
    let db = env.dir.path().join("data").join("kanki.sqlite3");
    common::succeed(
        std::process::Command::new(common::need("sqlite3", "sqlite3"))
            .arg(&db)
            .arg(format!(
                "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'nobody' WHERE seq = {seq};"
            )),
    );
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("audit record {seq} is broken")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `POST /api/v1/session` with a JSON body: the sign-in of a script.
fn sign_in_json(
    http: &reqwest::blocking::Client,
    api: &str,
    body: Value,
) -> reqwest::blocking::Response {
    http.post(format!("{api}/api/v1/session"))
        .json(&body)
        .send()
        .unwrap()
}

/// The session cookie from a response's `Set-Cookie`, and its attributes.
fn session_cookie(r: &reqwest::blocking::Response) -> (String, String) {
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let value = set.split(';').next().unwrap().to_string();
    (value, set)
}

#[test]
fn first_run_setup_then_sign_in_csrf_and_sign_out() {
    use std::io::BufRead;
    let env = Env::new("");
    // An empty data directory: serve prints a one-time setup link.
    let mut child = env
        .cmd(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut link = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(i) = line.find("http://") {
            link = line[i..].trim().to_string();
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    assert!(link.contains("/setup?code="), "no setup link printed");
    let code = link.rsplit("code=").next().unwrap().to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let api = env.api.clone();
    eventually(30, "serve up", || {
        http.get(format!("{api}/healthz")).send().is_ok()
    });
    let page = http.get(&link).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let setup = |code: &str, name: &str, password: &str| {
        http.post(format!("{api}/setup"))
            .form(&[("code", code), ("name", name), ("password", password)])
            .send()
            .unwrap()
            .status()
    };
    // A wrong code does nothing.
    assert_eq!(setup("wrong", "mallory", "long enough password"), 403);
    assert_eq!(setup(&code, "alice", "a long pass phrase"), 303);
    // The code works once.
    assert_eq!(setup(&code, "eve", "a long pass phrase"), 404);
    let listed = env.ok(&["operators", "list"]);
    assert!(listed.contains("alice\tlocal\tadministrator"), "{listed}");
    assert!(!listed.contains("eve") && !listed.contains("mallory"));
    env.ok(&[
        "operators",
        "add",
        "bob",
        "--kind",
        "machine",
        "--roles",
        "attribution-officer",
    ]);
    env.ok_with_stdin(
        &[
            "operators",
            "add",
            "carol",
            "--roles",
            "attribution-officer",
        ],
        "carol's long password",
    );
    env.directory("id,email,language,consent\nS1,s1@example.jp,ja,yes\n", "");

    // Wrong passwords: 401, counted, then rate-limited.
    let sign_in = |name: &str, password: &str| {
        sign_in_json(&http, &api, json!({"name": name, "password": password}))
    };
    for _ in 0..5 {
        assert_eq!(sign_in("carol", "not her password").status(), 401);
    }
    assert_eq!(sign_in("carol", "carol's long password").status(), 429);
    assert_eq!(sign_in("bob", "machines have none").status(), 401);

    let r = sign_in("alice", "a long pass phrase");
    assert_eq!(r.status(), 200);
    let (cookie, set) = session_cookie(&r);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let me: Value = r.json().unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let whoami = http
        .get(format!("{api}/api/v1/session"))
        .header("Cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(whoami.status(), 200);
    // Alice administers; she may not read subscribers.
    let r = http
        .get(format!("{api}/api/v1/subscribers/S1"))
        .header("Cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    env.ok(&[
        "operators",
        "roles",
        "alice",
        "--set",
        "administrator,attribution-officer",
    ]);
    eventually(10, "the new role seen", || {
        http.get(format!("{api}/api/v1/subscribers/S1"))
            .header("Cookie", &cookie)
            .send()
            .unwrap()
            .status()
            == 200
    });
    // A text/plain change with the cookie (what a page of another origin
    // can send) is refused and changes nothing; with the CSRF token it goes.
    let revoke = |headers: &[(&str, &str)]| {
        let mut q = http
            .post(format!("{api}/api/v1/subscribers"))
            .header("Cookie", &cookie)
            .header("Content-Type", "text/plain")
            .body("id,email,language,consent\nS1,s1@example.jp,ja,no\n");
        for (k, v) in headers {
            q = q.header(*k, *v);
        }
        q.send().unwrap().status().as_u16()
    };
    assert_eq!(revoke(&[]), 403);
    assert_eq!(revoke(&[("X-CSRF-Token", "not the token")]), 403);
    let s1: Value =
        serde_json::from_str(&env.ok(&["subscribers", "show", "S1", "--json"])).unwrap();
    assert_eq!(s1["consent"], true);
    assert_eq!(revoke(&[("X-CSRF-Token", csrf.as_str())]), 200);
    // Sign-out: the cookie, replayed, no longer works.
    let out = http
        .delete(format!("{api}/api/v1/session"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), 204);
    let replay = http
        .get(format!("{api}/api/v1/session"))
        .header("Cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(replay.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
}

/// A page of another origin (another port of 127.0.0.1: the same site to
/// the browser, so even a SameSite=Strict cookie goes along) that, opened
/// by a signed-in operator, posts `text/plain` bodies to the API: a list
/// import, a Shadowserver report and a subscriber file, by `fetch` and by
/// a form. None of it may change anything.
fn attack_page(api: &str, report: &str) -> String {
    let js = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        r#"<!doctype html><html><head><title>loading</title></head><body>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="post" enctype="text/plain" target="sink" action="{api}/api/v1/subscribers">
<input name="id,email,language,consent&#10;S-FORM,form@attacker.example,en,yes&#10;x" value="">
</form>
<script>
const posts = [
  ["{api}/api/v1/imports?format=plain", "evil-fetch.example\n"],
  ["{api}/api/v1/events?format=shadowserver&report_type=event4_sinkhole", {report}],
  ["{api}/api/v1/subscribers", "id,email,language,consent\nS-FETCH,fetch@attacker.example,en,yes\n"],
];
Promise.allSettled(posts.map(([url, body]) => fetch(url, {{
  method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body,
}}))).then(() => {{
  document.getElementById("f").submit();
  document.title = "posted";
}});
</script></body></html>"#,
        report = js(report)
    )
}

#[test]
fn a_page_of_another_origin_changes_nothing_in_headless_chromium() {
    use common::browser::{Driver, chromium_args};
    let env = Env::new("");
    env.two_subscribers_and_a_listed_name();
    env.ok_with_stdin(
        &[
            "operators",
            "add",
            "alice",
            "--roles",
            "analyst,list-curator,attribution-officer,viewer",
        ],
        "alice's long password",
    );
    let server = env.serve();
    let api = server.api.clone();
    let metrics_token = token_for(&env, "scraper", "viewer", &[]);
    let report = common::sinkhole_csv(&[("127.0.0.1", "mirai")]);

    // The other origin: a plain static server on another loopback port.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("attack.html"), attack_page(&api, &report)).unwrap();
    let port = common::free_port();
    let mut static_server = std::process::Command::new(common::python())
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(site.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let attacker = format!("http://127.0.0.1:{port}");
    eventually(30, "the other origin up", || {
        anonymous_client()
            .get(format!("{attacker}/attack.html"))
            .send()
            .is_ok()
    });

    let csrf_refusals = || {
        metric(
            &api,
            &metrics_token,
            "kanki_api_forbidden_total{permission=\"csrf\"}",
        )
    };
    let before = csrf_refusals();
    let tests = common::client();
    let json = |path: &str| -> Value {
        tests
            .get(format!("{api}{path}"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let imports_before = json("/api/v1/imports");
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let s = driver.session(&chromium_args(profile.path(), &[]), "en");
    // Alice signs in through the sign-in page: her browser holds the
    // session cookie.
    s.go(&format!("{api}/sign-in"));
    s.type_into("input[name=name]", "alice");
    s.type_into("input[name=password]", "alice's long password");
    s.click("button");
    for _ in 0..300 {
        if s.url().ends_with("/api/v1/session") && s.source().contains("alice") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        s.source().contains("alice"),
        "not signed in at {}:\n{}",
        s.url(),
        s.source()
    );
    // Then she opens the other site's page.
    s.go(&format!("{attacker}/attack.html"));
    eventually(30, "the page posted", || {
        s.call(reqwest::Method::GET, "/title", None) == "posted"
    });
    // All four posts reached kanki and were refused as cross-site.
    eventually(30, "four refusals counted", || {
        csrf_refusals() >= before + 4.0
    });
    drop(s);
    let _ = static_server.kill();
    let _ = static_server.wait();

    // Nothing changed: no import, no event, no subscriber.
    assert_eq!(json("/api/v1/imports"), imports_before);
    let cases = json("/api/v1/cases?subscriber=S1");
    assert_eq!(cases["items"].as_array().map(Vec::len), Some(0), "{cases}");
    for id in ["S-FETCH", "S-FORM"] {
        let r = tests
            .get(format!("{api}/api/v1/subscribers/{id}?purpose=csrf-test"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{id}");
    }
    // The same report sent by a client that may (a token) does make a
    // case: what the page sent would have changed something.
    let r = tests
        .post(format!(
            "{api}/api/v1/events?format=shadowserver&report_type=event4_sinkhole"
        ))
        .body(report)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let cases = json("/api/v1/cases?subscriber=S1");
    assert_eq!(cases["items"].as_array().map(Vec::len), Some(1), "{cases}");
}

/// A real OpenLDAP `slapd`, unprivileged on two loopback ports (ldaps://
/// and ldap:// for StartTLS) with its own configuration and database in a
/// temporary directory and a certificate from an openssl test CA. People:
/// hanako (in the group soc) and taro (in the group canteen).
struct Slapd {
    child: std::process::Child,
    ldaps: u16,
    ldap: u16,
    ca: String,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PEOPLE: &str = "ou=people,dc=kanki,dc=test";
const GROUPS: &str = "ou=groups,dc=kanki,dc=test";

impl Slapd {
    fn start() -> Slapd {
        let slapd = common::need("slapd", "slapd");
        let slapadd = common::need("slapadd", "slapd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca, cert, key) = common::test_certificates(d, "slapd");
        std::fs::create_dir(d.join("db")).unwrap();
        let conf = d.join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 pidfile {pid}\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 TLSCACertificateFile {ca}\n\
                 TLSCertificateFile {cert}\n\
                 TLSCertificateKeyFile {key}\n\
                 database mdb\n\
                 maxsize 10485760\n\
                 suffix \"dc=kanki,dc=test\"\n\
                 rootdn \"cn=admin,dc=kanki,dc=test\"\n\
                 directory {db}\n\
                 access to attrs=userPassword by anonymous auth by * none\n\
                 access to * by users read by * none\n",
                pid = d.join("slapd.pid").display(),
                db = d.join("db").display(),
            ),
        )
        .unwrap();
        let person = |uid: &str, password: &str| {
            format!(
                "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n\n"
            )
        };
        let group = |cn: &str, member: &str| {
            format!(
                "dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\nmember: uid={member},{PEOPLE}\n\n"
            )
        };
        let ldif = d.join("data.ldif");
        std::fs::write(
            &ldif,
            format!(
                "dn: dc=kanki,dc=test\nobjectClass: dcObject\nobjectClass: organization\no: kanki test\ndc: kanki\n\n\
                 dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
                 dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n{}{}{}{}",
                person("hanako", "hanako's directory password"),
                person("taro", "taro's directory password"),
                group("soc", "hanako"),
                group("canteen", "taro"),
            ),
        )
        .unwrap();
        common::succeed(
            std::process::Command::new(slapadd)
                .arg("-f")
                .arg(&conf)
                .arg("-l")
                .arg(&ldif),
        );
        let (ldaps, ldap) = (common::free_port(), common::free_port());
        let child = std::process::Command::new(slapd)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(format!(
                "ldaps://127.0.0.1:{ldaps}/ ldap://127.0.0.1:{ldap}/"
            ))
            // -d: stay in the foreground (killed with the test).
            .args(["-d", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        eventually(30, "slapd listening", || {
            std::net::TcpStream::connect(("127.0.0.1", ldaps)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", ldap)).is_ok()
        });
        Slapd {
            child,
            ldaps,
            ldap,
            ca,
            _dir: dir,
        }
    }

    /// `[operators.ldap]` for this directory: soc members are analysts.
    fn config(&self, starttls: bool) -> String {
        let url = if starttls {
            format!("ldap://127.0.0.1:{}", self.ldap)
        } else {
            format!("ldaps://127.0.0.1:{}", self.ldaps)
        };
        format!(
            "\n[operators.ldap]\nurl = \"{url}\"\nstarttls = {starttls}\nbind_dn = \"uid={{name}},{PEOPLE}\"\ngroup_base = \"{GROUPS}\"\nca_file = \"{}\"\n\n[operators.ldap.roles]\n\"cn=soc,{GROUPS}\" = \"analyst\"\n",
            self.ca
        )
    }
}

#[test]
fn ldap_operators_sign_in_against_slapd_with_the_roles_of_their_groups() {
    let slapd = Slapd::start();
    for starttls in [false, true] {
        let env = Env::new(&slapd.config(starttls));
        env.two_subscribers_and_a_listed_name();
        let server = env.serve();
        let api = server.api.clone();
        let http = anonymous_client();
        let sign_in = |name: &str, password: &str| {
            sign_in_json(&http, &api, json!({"name": name, "password": password}))
        };
        // Hanako, in soc: signed in, an analyst.
        let r = sign_in("hanako", "hanako's directory password");
        assert_eq!(
            r.status(),
            200,
            "starttls {starttls}: {}",
            r.text().unwrap()
        );
        let (cookie, _) = session_cookie(&r);
        let me: Value = r.json().unwrap();
        assert_eq!(me["roles"], json!(["analyst"]), "{me}");
        let cases = http
            .get(format!("{api}/api/v1/cases"))
            .header("Cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(cases.status(), 200);
        // An analyst does not read subscriber identities.
        let who = http
            .get(format!("{api}/api/v1/subscribers/S1"))
            .header("Cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(who.status(), 403);
        let listed = env.ok(&["operators", "list"]);
        assert!(listed.contains("hanako\tldap\tanalyst"), "{listed}");
        // A wrong password, and an empty one (an unauthenticated bind,
        // which the directory itself would accept), are refused.
        assert_eq!(sign_in("hanako", "not her password").status(), 401);
        assert_eq!(sign_in("hanako", "").status(), 401);
        // Taro is in no mapped group: no access, and no account made.
        assert_eq!(sign_in("taro", "taro's directory password").status(), 403);
        assert!(!env.ok(&["operators", "list"]).contains("taro"));
        // Disabled here: the directory's yes does not override it.
        env.ok(&["operators", "disable", "hanako"]);
        let r = sign_in("hanako", "hanako's directory password");
        assert_eq!(r.status(), 401, "{}", r.text().unwrap());
        let refused = metric(
            &api,
            common::test_token(),
            "kanki_sign_in_failures_total{reason=\"no-role\"}",
        );
        assert_eq!(refused, 1.0);
    }
}

#[test]
fn a_totp_code_signs_in_once_through_the_api() {
    let env = Env::new("");
    let out = env.ok_with_stdin(
        &["operators", "add", "carol", "--roles", "analyst", "--totp"],
        "carol's long password",
    );
    let uri = out
        .lines()
        .find_map(|l| l.strip_prefix("TOTP: "))
        .unwrap_or_else(|| panic!("no TOTP URI printed: {out}"));
    let b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let secret = data_encoding::BASE32_NOPAD.decode(b32.as_bytes()).unwrap();
    let server = env.serve();
    let api = server.api.clone();
    let http = anonymous_client();
    let sign_in = |totp: &str| {
        let body = json!({"name": "carol", "password": "carol's long password", "totp": totp});
        sign_in_json(&http, &api, body)
    };
    let code = kanki_operators::secret::totp_code(&secret, chrono::Utc::now().timestamp() as u64);
    assert_eq!(sign_in(&code).status(), 200);
    // The same code again (seen over her shoulder): refused, and counted.
    let again = sign_in(&code);
    assert_eq!(again.status(), 401);
    assert!(again.text().unwrap().contains("used already"));
    let reused = metric(
        &api,
        common::test_token(),
        "kanki_sign_in_failures_total{reason=\"totp-reused\"}",
    );
    assert_eq!(reused, 1.0);
}
