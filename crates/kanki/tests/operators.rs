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
    // Viewing the case, once, leaves one view record.
    get(
        &analyst,
        format!("{api}/api/v1/cases/{case}?purpose=triage"),
    );
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
    assert_eq!(views.len(), 1, "{views:?}");
    assert_eq!(views[0]["actor"], analyst_actor.as_str());
    assert_eq!(views[0]["purpose"], "triage");
    assert!(views[0]["input"].as_str().unwrap().contains("S1"));
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
    // A wrong code does nothing.
    let r = http
        .post(format!("{api}/setup"))
        .form(&[
            ("code", "wrong"),
            ("name", "mallory"),
            ("password", "long enough password"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{api}/setup"))
        .form(&[
            ("code", code.as_str()),
            ("name", "alice"),
            ("password", "a long pass phrase"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    // The code works once.
    let again = http
        .post(format!("{api}/setup"))
        .form(&[
            ("code", code.as_str()),
            ("name", "eve"),
            ("password", "a long pass phrase"),
        ])
        .send()
        .unwrap();
    assert_eq!(again.status(), 404);
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
        http.post(format!("{api}/api/v1/session"))
            .json(&json!({"name": name, "password": password}))
            .send()
            .unwrap()
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
