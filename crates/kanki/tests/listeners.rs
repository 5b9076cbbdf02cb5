//! The operator API's listener protects itself, tested against `kanki
//! serve`: TLS with a test CA made by openssl (a renewed certificate
//! served without a restart), no plain-HTTP listen beyond loopback, the
//! Host check, and the client's address behind a trusted reverse proxy.

mod common;

use std::time::{Duration, Instant};

use common::{Env, anonymous_client, client, client_trusting, eventually};
use serde_json::json;

/// Whether `c` gets a 200 from `url`.
fn answers(c: &reqwest::blocking::Client, url: &str) -> bool {
    c.get(url).send().is_ok_and(|r| r.status() == 200)
}

#[test]
fn the_api_over_tls_answers_clients_trusting_its_ca_and_serves_a_renewed_certificate_without_restart()
 {
    let certs = tempfile::tempdir().unwrap();
    let (ca1, cert1, key1) = common::test_certificates(certs.path(), "first");
    let (ca2, cert2, key2) = common::test_certificates(certs.path(), "second");
    // The files kanki serves, replaced in place later as a renewal does.
    let (cert, key) = (certs.path().join("api.pem"), certs.path().join("api.key"));
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    let env = Env::with_api(
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            cert.display(),
            key.display()
        ),
        "",
    );
    assert!(env.api.starts_with("https://127.0.0.1:"), "{}", env.api);
    env.ok_with_stdin(
        &["operators", "add", "carol", "--roles", "viewer"],
        "carol's long password",
    );
    let first = client_trusting(&ca1);
    let second = client_trusting(&ca2);
    let server = env.serve_checked_by(&first);
    let api = &server.api;

    // A client trusting the CA gets answers, by address and by name.
    let r = first
        .get(format!("{api}/api/v1/indicators"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let port = api.rsplit(':').next().unwrap();
    assert!(answers(
        &first,
        &format!("https://localhost:{port}/healthz")
    ));
    // A plain-HTTP client gets nothing; one trusting another CA neither.
    let plain = format!("http://127.0.0.1:{port}/healthz");
    assert!(client().get(&plain).send().is_err());
    assert!(second.get(format!("{api}/healthz")).send().is_err());

    // Signing in over TLS: the session cookie is Secure.
    let r = anonymous_client_trusting(&ca1)
        .post(format!("{api}/api/v1/session"))
        .json(&json!({"name": "carol", "password": "carol's long password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");

    // The certificate is renewed (a new chain and key, written over the
    // old files): new connections get it, with no restart.
    std::fs::copy(&key2, &key).unwrap();
    std::fs::copy(&cert2, &cert).unwrap();
    eventually(30, "the renewed certificate served", || {
        answers(&second, &format!("{api}/healthz"))
    });
    // (A new client: a connection made before keeps its certificate.)
    assert!(!answers(&client_trusting(&ca1), &format!("{api}/healthz")));

    // SIGHUP reloads at once and does not stop the server.
    std::fs::copy(&key1, &key).unwrap();
    std::fs::copy(&cert1, &cert).unwrap();
    common::signal(server.child.id(), "HUP");
    eventually(30, "the first certificate served again", || {
        answers(&client_trusting(&ca1), &format!("{api}/healthz"))
    });
    let r = first
        .get(format!("{api}/api/v1/indicators"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn anonymous_client_trusting(ca: &str) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// `kanki serve` with `config`: it must stop by itself; its stderr.
fn refused_at_start(env: &Env) -> String {
    let mut child = env
        .cmd(&["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kanki serve started with a configuration it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    err
}

#[test]
fn a_listen_beyond_loopback_without_tls_is_refused_at_start_with_the_reason() {
    let env = Env::new("");
    // The documentation address (192.0.2.0/24): refused before any bind.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let port = env.api.rsplit(':').next().unwrap();
    let text = text.replace(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("listen = \"192.0.2.10:{port}\""),
    );
    std::fs::write(&env.config, &text).unwrap();
    let err = refused_at_start(&env);
    assert!(err.contains("key `api.listen`"), "{err}");
    assert!(
        err.contains("beyond loopback in plain HTTP") && err.contains("api.tls_cert_file"),
        "{err}"
    );
    // A trusted proxy whose TLS is not declared is not enough either.
    std::fs::write(
        &env.config,
        text.replace(
            "\n\n[policy]",
            "\ntrusted_proxies = [\"192.0.2.1/32\"]\n\n[policy]",
        ),
    )
    .unwrap();
    let err = refused_at_start(&env);
    assert!(err.contains("api.proxy_tls = true"), "{err}");
}

#[test]
fn a_request_naming_another_host_is_refused_and_counted() {
    let env = Env::new("");
    let server = env.serve();
    let api = &server.api;
    let port = api.rsplit(':').next().unwrap();
    let c = client();
    // A page on another site whose name resolves to the API's address
    // (DNS rebinding) sends its own name as Host.
    let r = c
        .get(format!("{api}/api/v1/indicators"))
        .header("Host", format!("evil.example:{port}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("evil.example"));
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = c
            .get(format!("{api}/api/v1/indicators"))
            .header("Host", &host)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    let metrics = c
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("kanki_api_forbidden_total{permission=\"host\"} 1"),
        "{metrics}"
    );
}

#[test]
fn behind_a_trusted_proxy_the_client_is_the_address_it_forwards() {
    // The proxy is this machine (127.0.0.1); its clients' TLS is declared.
    let env = Env::with_api("trusted_proxies = [\"127.0.0.1/32\"]\nproxy_tls = true", "");
    let token = kanki_operators::secret::new_token().token;
    env.test_operator();
    env.ok_with_stdin(
        &[
            "tokens",
            "create",
            "--operator",
            "tests",
            "--name",
            "branch-office",
            "--expires-in",
            "never",
            "--source",
            "192.0.2.0/24",
            "--secret-stdin",
        ],
        &token,
    );
    env.ok_with_stdin(
        &["operators", "add", "carol", "--roles", "viewer"],
        "carol's long password",
    );
    let server = env.serve();
    let api = &server.api;
    let http = anonymous_client();
    let with = |xff: Option<&str>| {
        let mut r = http
            .get(format!("{api}/api/v1/indicators"))
            .bearer_auth(&token);
        if let Some(x) = xff {
            r = r.header("X-Forwarded-For", x);
        }
        r.send().unwrap().status().as_u16()
    };
    // The token is good from 192.0.2.0/24 only: through the proxy, from
    // there, it works; the proxy's own address is not in its prefixes.
    assert_eq!(with(Some("192.0.2.5")), 200);
    assert_ne!(with(None), 200);
    // What the client claimed left of the proxy's entry is not believed.
    assert_ne!(with(Some("192.0.2.5, 198.51.100.7")), 200);
    // An unreadable forwarded address is refused.
    assert_eq!(with(Some("unknown")), 400);
    // The proxy speaks TLS to clients: the session cookie is Secure.
    let r = http
        .post(format!("{api}/api/v1/session"))
        .header("X-Forwarded-For", "192.0.2.5")
        .json(&json!({"name": "carol", "password": "carol's long password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}
