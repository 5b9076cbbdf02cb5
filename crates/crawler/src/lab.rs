//! The lab: an HTTP server on 127.0.0.1 hosting realistic attack chains,
//! for the tests and the benchmark (`kanki bench crawl`). Nothing in it is
//! real malware: the "payloads" only carry the magic bytes and structure
//! that triage looks at. Its addresses are loopback, so a crawler reaches
//! it only with `lab_allow = ["127.0.0.0/8"]`.
//!
//! | path | scenario |
//! | --- | --- |
//! | `/entrance.html` | compromised page with an injected script (without it after [`LabServer::clean_up`]) |
//! | `/js/inject.js` | obfuscated script (`atob`) writing a hidden iframe to `/tds` |
//! | `/tds` → `/r1` → `/r2` → `/landing.html` | a chain of 302s |
//! | `/landing.html` | exploit landing: `String.fromCharCode` redirect to the PE, a YARA marker |
//! | `/payload/setup.exe` | fake PE (404 after [`LabServer::clean_up`]) |
//! | `/mobile.html` → `/m/gate` | cloaking by User-Agent: Android gets `/m/app.apk` (fake APK) |
//! | `/search.html` | cloaking by Referer: from a search engine, a meta refresh to the PE |
//! | `/applet.html` | applet loading `/java/exploit.jar` |
//! | `/form.html` | a form submitted on load, to `/tds` |
//! | `/bomb.html` | frames of `/bomb/gzip` (a gzip bomb) and `/bomb/archive.zip` (a zip bomb) |
//! | `/slow` | slow loris: headers, then one byte a second |
//! | `/loop/a` ⇄ `/loop/b` | a redirect loop |
//! | `/private.html` | a frame of `http://intranet.lab/` (to be mapped to a private address) and `/redirect-private` (a 302 to 192.168.1.1) |
//! | `/clean.html` | a page with nothing bad |
//! | `/.well-known/security.txt` | a contact, when the lab is reached by address |
//! | `/rdap/domain/NAME`, `/rdap/ip/ADDRESS` | RDAP answers with an abuse contact (for `NAME.lab`) |
//! | `/bench/N` | a page with a script and a frame, for the benchmark |
//!
//! Everything is served over HTTP and, on a second port, over HTTPS with a
//! self-signed certificate (HTTP/2 or HTTP/1.1 by ALPN).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use data_encoding::BASE64;

/// The marker in the lab's exploit landing page that the test YARA rule finds.
pub const EXPLOIT_MARKER: &str = "KANKI-LAB-EXPLOIT-KIT";

struct Payloads {
    pe: Vec<u8>,
    apk: Vec<u8>,
    jar: Vec<u8>,
    gzip_bomb: Vec<u8>,
    zip_bomb: Vec<u8>,
}

#[derive(Clone)]
struct Lab {
    latency: Duration,
    /// Set by [`LabServer::clean_up`]: the entrance page without its
    /// injected script, the payload taken down.
    cleaned: Arc<AtomicBool>,
}

/// A fake PE: DOS header, stub text and a PE signature, nothing runnable.
pub fn fake_pe() -> Vec<u8> {
    let mut pe = vec![0u8; 256];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3c] = 0x80;
    pe[0x40..0x40 + 39].copy_from_slice(b"This program cannot be run in DOS mode.");
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    pe
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .expect("in memory");
        w.write_all(data).expect("in memory");
    }
    w.finish().expect("in memory").into_inner()
}

/// A fake APK: a ZIP with a manifest and a DEX header.
pub fn fake_apk() -> Vec<u8> {
    zip_of(&[
        ("AndroidManifest.xml", b"\x03\x00\x08\x00fake manifest"),
        ("classes.dex", b"dex\n035\0fake dex"),
    ])
}

/// The payloads, made on first use (the bombs take a moment and 32 MiB).
fn payloads() -> &'static Payloads {
    static PAYLOADS: std::sync::OnceLock<Payloads> = std::sync::OnceLock::new();
    PAYLOADS.get_or_init(make_payloads)
}

fn make_payloads() -> Payloads {
    let zeros = vec![0u8; 32 << 20];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&zeros).expect("in memory");
    let gzip_bomb = gz.finish().expect("in memory");
    let inner = zip_of(&[("zeros.bin", &zeros)]);
    let zip_bomb = zip_of(&[("a.zip", &inner), ("b.zip", &inner), ("c.zip", &inner)]);
    Payloads {
        pe: fake_pe(),
        apk: fake_apk(),
        jar: zip_of(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
            ("Exploit.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x34"),
        ]),
        gzip_bomb,
        zip_bomb,
    }
}

fn page(body: &str) -> Response {
    Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>lab</title></head><body>{body}</body></html>"
    ))
    .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

fn binary(data: &[u8], ct: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct)], data.to_vec()).into_response()
}

/// An RDAP answer (RFC 9083) whose abuse entity has this e-mail address.
fn rdap_answer(email: &str) -> Response {
    let body = format!(
        r#"{{"objectClassName":"domain","entities":[{{"objectClassName":"entity","roles":["registrar"],
        "entities":[{{"objectClassName":"entity","roles":["abuse"],
        "vcardArray":["vcard",[["version",{{}},"text","4.0"],["email",{{}},"text","{email}"]]]}}]}}]}}"#
    );
    ([(header::CONTENT_TYPE, "application/rdap+json")], body).into_response()
}

async fn latency(State(lab): State<Lab>, req: Request, next: Next) -> Response {
    if !lab.latency.is_zero() {
        tokio::time::sleep(lab.latency).await;
    }
    next.run(req).await
}

fn router(lab: Lab) -> Router {
    // document.write of a hidden iframe, behind atob.
    let hidden = r#"document.write('<iframe src="/tds" width="1" height="1" style="visibility:hidden"></iframe>');"#;
    let inject = format!(
        "/* analytics */ (function(){{ var s = '{}'; eval(atob(s)); }})();",
        BASE64.encode(hidden.as_bytes())
    );
    let to_pe: Vec<String> = "/payload/setup.exe"
        .bytes()
        .map(|b| b.to_string())
        .collect();
    let landing = format!(
        "<!-- {EXPLOIT_MARKER} --><script>var u = String.fromCharCode({}); window.location = u;\n\
         location.href = String.fromCharCode({});</script>",
        to_pe.join(","),
        to_pe.join(",")
    );
    Router::new()
        .route(
            "/entrance.html",
            get(|State(lab): State<Lab>| async move {
                let injected = if lab.cleaned.load(Ordering::Relaxed) {
                    ""
                } else {
                    "<script src=\"/js/inject.js\"></script>"
                };
                page(&format!(
                    "<h1>Tanaka Dental Clinic</h1><p>Opening hours: 9:00-18:00</p>{injected}"
                ))
            }),
        )
        .route(
            "/js/inject.js",
            get(move || {
                let js = inject.clone();
                async move { ([(header::CONTENT_TYPE, "application/javascript")], js).into_response() }
            }),
        )
        .route("/tds", get(|| async { redirect("/r1") }))
        .route("/r1", get(|| async { redirect("/r2") }))
        .route("/r2", get(|| async { redirect("/landing.html") }))
        .route(
            "/landing.html",
            get(move || {
                let l = landing.clone();
                async move { page(&l) }
            }),
        )
        .route(
            "/payload/setup.exe",
            get(|State(lab): State<Lab>| async move {
                if lab.cleaned.load(Ordering::Relaxed) {
                    StatusCode::NOT_FOUND.into_response()
                } else {
                    binary(&payloads().pe, "application/octet-stream")
                }
            }),
        )
        .route(
            "/mobile.html",
            get(|| async {
                page("<p>News</p><iframe src=\"/m/gate\" style=\"display:none\"></iframe>")
            }),
        )
        .route(
            "/m/gate",
            get(|headers: HeaderMap| async move {
                let ua = headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if ua.contains("Android") {
                    redirect("/m/app.apk")
                } else {
                    page("<p>nothing here</p>")
                }
            }),
        )
        .route(
            "/m/app.apk",
            get(|| async move {
                binary(&payloads().apk, "application/vnd.android.package-archive")
            }),
        )
        .route(
            "/search.html",
            get(|headers: HeaderMap| async move {
                let from_search = headers
                    .get(header::REFERER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|r| r.contains("google.") || r.contains("yahoo."));
                if from_search {
                    Html(
                        "<html><head><meta http-equiv=\"refresh\" content=\"0;url=/payload/setup.exe\"></head></html>",
                    )
                    .into_response()
                } else {
                    page("<p>Recipes</p>")
                }
            }),
        )
        .route(
            "/applet.html",
            get(|| async {
                page("<applet code=\"Exploit.class\" archive=\"exploit.jar\" codebase=\"/java\" width=\"1\" height=\"1\"></applet>")
            }),
        )
        .route(
            "/java/exploit.jar",
            get(|| async move {
                binary(&payloads().jar, "application/java-archive")
            }),
        )
        .route(
            "/form.html",
            get(|| async {
                Html("<html><body onload=\"document.forms[0].submit()\"><form action=\"/tds\" method=\"post\"></form></body></html>")
            }),
        )
        .route(
            "/bomb.html",
            get(|| async {
                page("<iframe src=\"/bomb/gzip\"></iframe><iframe src=\"/bomb/archive.zip\"></iframe>")
            }),
        )
        .route(
            "/bomb/gzip",
            get(|| async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/html"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    payloads().gzip_bomb.clone(),
                )
                    .into_response()
            }),
        )
        .route(
            "/bomb/archive.zip",
            get(|| async move {
                binary(&payloads().zip_bomb, "application/zip")
            }),
        )
        .route(
            "/slow",
            get(|| async {
                let stream = futures_util::stream::unfold(0u32, |n| async move {
                    if n > 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    (n < 3600).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b" ")), n + 1))
                });
                ([(header::CONTENT_TYPE, "text/html")], Body::from_stream(stream)).into_response()
            }),
        )
        .route("/loop/a", get(|| async { redirect("/loop/b") }))
        .route("/loop/b", get(|| async { redirect("/loop/a") }))
        .route(
            "/private.html",
            get(|| async {
                page("<iframe src=\"http://intranet.lab/\"></iframe><iframe src=\"/redirect-private\"></iframe>")
            }),
        )
        .route("/redirect-private", get(|| async { redirect("http://192.168.1.1/admin") }))
        .route(
            "/.well-known/security.txt",
            get(|headers: HeaderMap| async move {
                // Only the site reached by address publishes one; reached by
                // name, the contact must come from RDAP.
                let by_address = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|h| h.starts_with("127."));
                if by_address {
                    "Contact: mailto:security@clinic.example\nExpires: 2099-01-01T00:00:00Z\n"
                        .into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route(
            "/rdap/domain/{name}",
            get(|Path(name): Path<String>| async move {
                if name.ends_with(".lab") && name.matches('.').count() == 1 {
                    rdap_answer(&format!("abuse@registrar-of-{name}.example"))
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route(
            "/rdap/ip/{addr}",
            get(|| async { rdap_answer("abuse@isp.example") }),
        )
        .route("/clean.html", get(|| async { page("<p>Nothing to see.</p><a href=\"/entrance.html\">x</a>") }))
        .route(
            "/bench/{n}",
            get(|Path(n): Path<u64>| async move {
                page(&format!(
                    "<p>page {n}</p><script src=\"/bench/{n}/a.js\"></script><iframe src=\"/bench/{n}/frame\"></iframe>"
                ))
            }),
        )
        .route(
            "/bench/{n}/a.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/javascript")], "var x = 1;").into_response()
            }),
        )
        .route("/bench/{n}/frame", get(|| async { page("<p>frame</p>") }))
        .layer(middleware::from_fn_with_state(lab.clone(), latency))
        .with_state(lab)
}

/// The name in the lab's self-signed certificate (and its common name).
pub const LAB_CERT_NAME: &str = "lab.test";

/// A TLS acceptor with a fresh self-signed certificate for
/// [`LAB_CERT_NAME`], offering HTTP/2 and HTTP/1.1 by ALPN.
fn tls_acceptor() -> Result<tokio_rustls::TlsAcceptor, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![LAB_CERT_NAME.to_string()])
        .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kanki lab");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS, each connection HTTP/2 or HTTP/1.1 as the client
/// chose by ALPN.
async fn serve_tls(listener: tokio::net::TcpListener, app: Router, tls: tokio_rustls::TlsAcceptor) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A running lab; stopped when dropped.
pub struct LabServer {
    pub addr: SocketAddr,
    /// The same lab over HTTPS, with a self-signed certificate for
    /// [`LAB_CERT_NAME`] (so invalid: no root signed it).
    pub tls_addr: SocketAddr,
    cleaned: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LabServer {
    /// Starts the lab on 127.0.0.1 (a free port) in a thread of its own,
    /// adding `latency` to every response.
    pub fn start(latency: Duration) -> std::io::Result<LabServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        tls_listener.set_nonblocking(true)?;
        let tls_addr = tls_listener.local_addr()?;
        let tls = tls_acceptor().map_err(std::io::Error::other)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cleaned = Arc::new(AtomicBool::new(false));
        let lab = Lab {
            latency,
            cleaned: cleaned.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("kanki-lab".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    let tls_listener =
                        tokio::net::TcpListener::from_std(tls_listener).expect("a tokio listener");
                    let app = router(lab);
                    // Not a graceful shutdown: the slow-loris responses
                    // would hold it for an hour.
                    tokio::select! {
                        _ = axum::serve(listener, app.clone()) => {}
                        _ = serve_tls(tls_listener, app, tls) => {}
                        _ = stopped => {}
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(LabServer {
            addr,
            tls_addr,
            cleaned,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The entrance site's administrator removes the injected script, and
    /// the distribution site's payload is taken down (answers 404).
    pub fn clean_up(&self) {
        self.cleaned.store(true, Ordering::Relaxed);
    }

    /// `https://127.0.0.1:PORT` + `path`, the lab over TLS.
    pub fn tls_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.tls_addr)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for LabServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
