//! Where a response leads: typed edges from headers, HTML and scripts.
//!
//! HTML is read with html5gum, a WHATWG tokenizer, so hostile markup is
//! tokenized the way a browser would; scripts go through [`crate::js`].
//! Ordinary links (`<a href>`) are not edges: a drive-by chain does not
//! wait for a click.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::js::{self, JsTarget};

/// How the crawler got from one node to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// A URL the crawl started from.
    Seed,
    /// HTTP 301, 302, 303, 307, 308 with `Location`.
    HttpRedirect,
    /// The `Refresh` response header.
    RefreshHeader,
    /// `<meta http-equiv="refresh">`.
    MetaRefresh,
    /// `location = ...`, `location.replace(...)` and the like in a script.
    JsLocation,
    /// `window.open(...)` in a script.
    JsWindowOpen,
    /// An element a script writes (`document.write`) or creates.
    JsWrite,
    /// `<iframe>` or `<frame>`.
    Iframe,
    /// `<script src>`.
    Script,
    /// `<object data>` (or its `movie` parameter).
    Object,
    /// `<embed src>`.
    Embed,
    /// `<applet code/archive>`.
    Applet,
    /// A form that a script submits as soon as the page loads.
    FormSubmit,
}

impl EdgeKind {
    /// Whether following the edge replaces the page (a redirect hop) rather
    /// than loading something into it (one level deeper).
    pub fn is_redirect(self) -> bool {
        matches!(
            self,
            EdgeKind::HttpRedirect
                | EdgeKind::RefreshHeader
                | EdgeKind::MetaRefresh
                | EdgeKind::JsLocation
                | EdgeKind::JsWindowOpen
                | EdgeKind::FormSubmit
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Seed => "seed",
            EdgeKind::HttpRedirect => "http-redirect",
            EdgeKind::RefreshHeader => "refresh-header",
            EdgeKind::MetaRefresh => "meta-refresh",
            EdgeKind::JsLocation => "js-location",
            EdgeKind::JsWindowOpen => "js-window-open",
            EdgeKind::JsWrite => "js-write",
            EdgeKind::Iframe => "iframe",
            EdgeKind::Script => "script",
            EdgeKind::Object => "object",
            EdgeKind::Embed => "embed",
            EdgeKind::Applet => "applet",
            EdgeKind::FormSubmit => "form-submit",
        }
    }
}

/// One edge out of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    pub edge: EdgeKind,
    /// What is notable about it: `hidden`, `tiny`, `decoded:atob`,
    /// `tag:iframe`, `post` ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// Edges out of one page at most (a page of a million iframes is cut).
pub const MAX_LINKS: usize = 256;

/// The edges of a response: its redirect headers, and its HTML or script body.
pub fn links(
    base: &Url,
    status: Option<u16>,
    headers: &[(String, String)],
    body: &[u8],
    kind: BodyKind,
) -> Vec<Link> {
    let mut out = Links::new(base.clone());
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if let Some(s) = status
        && matches!(s, 301 | 302 | 303 | 307 | 308)
        && let Some(loc) = header("location")
    {
        out.push(loc, EdgeKind::HttpRedirect, Vec::new());
    }
    if let Some(r) = header("refresh")
        && let Some(u) = refresh_target(r)
    {
        out.push(&u, EdgeKind::RefreshHeader, Vec::new());
    }
    match kind {
        BodyKind::Html => html(&mut out, &String::from_utf8_lossy(body), &[]),
        BodyKind::Script => script(&mut out, &String::from_utf8_lossy(body)),
        BodyKind::Other => {}
    }
    out.links
}

/// What the extractor reads a body as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Html,
    Script,
    Other,
}

struct Links {
    base: Url,
    links: Vec<Link>,
    seen: HashSet<(String, EdgeKind)>,
    /// Forms with an action, and whether any script submits one.
    forms: Vec<(String, bool)>,
    submits: bool,
    markup_depth: u8,
}

impl Links {
    fn new(base: Url) -> Self {
        Links {
            base,
            links: Vec::new(),
            seen: HashSet::new(),
            forms: Vec::new(),
            submits: false,
            markup_depth: 0,
        }
    }

    fn push(&mut self, raw: &str, edge: EdgeKind, flags: Vec<String>) {
        if self.links.len() >= MAX_LINKS {
            return;
        }
        let raw = raw.trim().trim_matches(|c| c == '"' || c == '\'');
        let lower = raw.get(..11).unwrap_or(raw).to_ascii_lowercase();
        if raw.is_empty()
            || ["javascript:", "data:", "about:", "mailto:", "#"]
                .iter()
                .any(|p| lower.starts_with(p))
        {
            return;
        }
        let Ok(url) = self.base.join(raw) else {
            return;
        };
        if !matches!(url.scheme(), "http" | "https") {
            return;
        }
        let mut url = url;
        url.set_fragment(None);
        let key = (url.to_string(), edge);
        if self.seen.insert(key.clone()) {
            self.links.push(Link {
                url: key.0,
                edge,
                flags,
            });
        }
    }
}

/// The URL of a `Refresh` value: `5; url=http://...` (quotes allowed).
pub fn refresh_target(v: &str) -> Option<String> {
    let (_, rest) = v.split_once([';', ','])?;
    let rest = rest.trim_start();
    // `get`: the first three bytes may end inside a character.
    let rest = if rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("url")) {
        rest[3..].trim_start().strip_prefix('=')?.trim()
    } else {
        rest.trim()
    };
    let u = rest.trim_matches(|c| c == '"' || c == '\'').trim();
    (!u.is_empty()).then(|| u.to_string())
}

fn attr<'a>(tag: &'a html5gum::StartTag<()>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    tag.attributes
        .get(name.as_bytes())
        .map(|v| String::from_utf8_lossy(v))
}

/// Whether an element is out of sight: hidden, or a few pixels wide.
fn visibility_flags(tag: &html5gum::StartTag<()>) -> Vec<String> {
    let mut flags = Vec::new();
    let style = attr(tag, "style")
        .map(|s| s.to_ascii_lowercase().replace(' ', ""))
        .unwrap_or_default();
    if tag.attributes.contains_key(b"hidden".as_slice())
        || style.contains("display:none")
        || style.contains("visibility:hidden")
        || style.contains("opacity:0")
    {
        flags.push("hidden".to_string());
    }
    let px = |s: &str| -> Option<u32> {
        let d: String = s
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        d.parse().ok()
    };
    let size = |name: &str| {
        attr(tag, name).and_then(|v| px(&v)).or_else(|| {
            style
                .split(';')
                .find_map(|d| d.strip_prefix(&format!("{name}:")).and_then(px))
        })
    };
    let (w, h) = (size("width"), size("height"));
    if w.is_some_and(|w| w <= 2) || h.is_some_and(|h| h <= 2) {
        flags.push("tiny".to_string());
    }
    flags
}

fn html(out: &mut Links, text: &str, extra_flags: &[String]) {
    use html5gum::{Token, Tokenizer};
    let mut in_script = false;
    let mut script_text = String::new();
    let mut scripts: Vec<String> = Vec::new();
    let with = |mut flags: Vec<String>| {
        flags.extend(extra_flags.iter().cloned());
        flags
    };
    // Written markup keeps its own edge type; its tags are flags.
    let written = !extra_flags.is_empty();
    let edge = |e: EdgeKind, tag: &str, flags: &mut Vec<String>| {
        if written {
            flags.push(format!("tag:{tag}"));
            EdgeKind::JsWrite
        } else {
            e
        }
    };
    // Script and style contents are text, as a browser's tree builder
    // would switch the tokenizer's state for them.
    let mut emitter = html5gum::DefaultEmitter::<()>::default();
    emitter.naively_switch_states(true);
    // Reading from a `&str` cannot fail.
    for token in Tokenizer::new_with_emitter(text, emitter).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = String::from_utf8_lossy(&tag.name).to_ascii_lowercase();
                for (k, v) in &tag.attributes {
                    if k.len() > 2 && k.starts_with(b"on") {
                        scripts.push(String::from_utf8_lossy(v).into_owned());
                    }
                }
                match name.as_str() {
                    "base" => {
                        if let Some(h) = attr(&tag, "href")
                            && let Ok(b) = out.base.join(&h)
                        {
                            out.base = b;
                        }
                    }
                    "meta" => {
                        let refresh = attr(&tag, "http-equiv")
                            .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"));
                        if refresh
                            && let Some(c) = attr(&tag, "content")
                            && let Some(u) = refresh_target(&c)
                        {
                            let mut f = with(Vec::new());
                            let e = edge(EdgeKind::MetaRefresh, "meta", &mut f);
                            out.push(&u, e, f);
                        }
                    }
                    "iframe" | "frame" => {
                        if let Some(src) = attr(&tag, "src") {
                            let mut f = with(visibility_flags(&tag));
                            let e = edge(EdgeKind::Iframe, &name, &mut f);
                            out.push(&src, e, f);
                        }
                    }
                    "script" => {
                        match attr(&tag, "src") {
                            Some(src) => {
                                let mut f = with(Vec::new());
                                let e = edge(EdgeKind::Script, "script", &mut f);
                                out.push(&src, e, f);
                            }
                            None => in_script = !tag.self_closing,
                        }
                        script_text.clear();
                    }
                    "object" => {
                        if let Some(d) = attr(&tag, "data") {
                            let mut f = with(visibility_flags(&tag));
                            let e = edge(EdgeKind::Object, "object", &mut f);
                            out.push(&d, e, f);
                        }
                    }
                    "param" => {
                        let movie = attr(&tag, "name").is_some_and(|n| {
                            matches!(n.to_ascii_lowercase().as_str(), "movie" | "src" | "url")
                        });
                        if movie && let Some(v) = attr(&tag, "value") {
                            let mut f = with(Vec::new());
                            let e = edge(EdgeKind::Object, "param", &mut f);
                            out.push(&v, e, f);
                        }
                    }
                    "embed" => {
                        if let Some(s) = attr(&tag, "src") {
                            let mut f = with(visibility_flags(&tag));
                            let e = edge(EdgeKind::Embed, "embed", &mut f);
                            out.push(&s, e, f);
                        }
                    }
                    "applet" => {
                        let codebase = attr(&tag, "codebase").map(|c| c.into_owned());
                        for a in ["archive", "code"] {
                            if let Some(v) = attr(&tag, a) {
                                let v = match &codebase {
                                    Some(cb) => format!("{}/{}", cb.trim_end_matches('/'), v),
                                    None => v.into_owned(),
                                };
                                let mut f = with(Vec::new());
                                let e = edge(EdgeKind::Applet, "applet", &mut f);
                                out.push(&v, e, f);
                                break;
                            }
                        }
                    }
                    "form" => {
                        if let Some(a) = attr(&tag, "action") {
                            let post = attr(&tag, "method")
                                .is_some_and(|m| m.eq_ignore_ascii_case("post"));
                            out.forms.push((a.into_owned(), post));
                        }
                    }
                    _ => {}
                }
            }
            Token::String(s) if in_script && script_text.len() < 4 << 20 => {
                script_text.push_str(&String::from_utf8_lossy(&s));
            }
            Token::EndTag(tag) if in_script && tag.name.eq_ignore_ascii_case(b"script") => {
                in_script = false;
                scripts.push(std::mem::take(&mut script_text));
            }
            _ => {}
        }
    }
    if in_script {
        scripts.push(script_text);
    }
    for s in scripts {
        script(out, &s);
    }
    if out.submits {
        for (action, post) in std::mem::take(&mut out.forms) {
            let mut f = with(Vec::new());
            if post {
                f.push("post".into());
            }
            out.push(&action, EdgeKind::FormSubmit, f);
        }
    }
}

fn script(out: &mut Links, text: &str) {
    for layer in js::layers(text) {
        let mut flags: Vec<String> = layer
            .decoded_by
            .iter()
            .map(|d| format!("decoded:{d}"))
            .collect();
        flags.dedup();
        for t in js::targets(&layer.text) {
            match t {
                JsTarget::Location(u) => out.push(&u, EdgeKind::JsLocation, flags.clone()),
                JsTarget::WindowOpen(u) => out.push(&u, EdgeKind::JsWindowOpen, flags.clone()),
                JsTarget::CreatedElement { tag, url } => {
                    let mut f = flags.clone();
                    f.push(format!("tag:{tag}"));
                    f.push("created".into());
                    out.push(&url, EdgeKind::JsWrite, f);
                }
                JsTarget::Markup(m) => {
                    // Markup inside markup inside a script: bounded.
                    if out.markup_depth < 3 {
                        out.markup_depth += 1;
                        let mut f = flags.clone();
                        f.push("written".into());
                        html(out, &m, &f);
                        out.markup_depth -= 1;
                    }
                }
                JsTarget::SubmitsForm => out.submits = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(html: &str) -> Vec<Link> {
        let base = Url::parse("http://entrance.example/dir/index.html").unwrap();
        links(&base, Some(200), &[], html.as_bytes(), BodyKind::Html)
    }

    fn has(links: &[Link], url: &str, edge: EdgeKind) -> bool {
        links.iter().any(|l| l.url == url && l.edge == edge)
    }

    #[test]
    fn redirect_headers() {
        let base = Url::parse("http://a.example/x").unwrap();
        let h = vec![
            ("location".to_string(), "/next".to_string()),
            (
                "refresh".to_string(),
                "0; url='http://b.example/'".to_string(),
            ),
        ];
        let l = links(&base, Some(302), &h, b"", BodyKind::Other);
        assert!(has(&l, "http://a.example/next", EdgeKind::HttpRedirect));
        assert!(has(&l, "http://b.example/", EdgeKind::RefreshHeader));
        // A value whose first bytes after the `;` are one character
        // (found by the crawl_extract fuzz target).
        assert_eq!(
            refresh_target("0;l\u{fffd}cation"),
            Some("l\u{fffd}cation".into())
        );
        assert_eq!(refresh_target("0;\u{fffd}"), Some("\u{fffd}".into()));
    }

    #[test]
    fn tags_become_typed_edges() {
        let l = page(
            r#"<html><head><meta http-equiv="Refresh" content="3;URL=/meta">
            <script src="//cdn.example/lib.js"></script></head>
            <body><a href="/ignored">x</a>
            <iframe src="http://evil.example/i" width="1" height="1" style="visibility:hidden"></iframe>
            <iframe src="/visible" width="600" height="400"></iframe>
            <object data="/flash.swf"></object><embed src="/e.pdf">
            <applet code="Exploit.class" archive="x.jar" codebase="/java"></applet>
            <form id="f" action="/landing" method="post"></form>
            <script>document.getElementById('f').submit();</script></body></html>"#,
        );
        assert!(has(
            &l,
            "http://entrance.example/meta",
            EdgeKind::MetaRefresh
        ));
        assert!(has(&l, "http://cdn.example/lib.js", EdgeKind::Script));
        let hidden = l.iter().find(|l| l.url == "http://evil.example/i").unwrap();
        assert_eq!(hidden.edge, EdgeKind::Iframe);
        assert!(hidden.flags.contains(&"hidden".to_string()));
        assert!(hidden.flags.contains(&"tiny".to_string()));
        let visible = l
            .iter()
            .find(|l| l.url == "http://entrance.example/visible")
            .unwrap();
        assert!(visible.flags.is_empty());
        assert!(has(
            &l,
            "http://entrance.example/flash.swf",
            EdgeKind::Object
        ));
        assert!(has(&l, "http://entrance.example/e.pdf", EdgeKind::Embed));
        assert!(has(
            &l,
            "http://entrance.example/java/x.jar",
            EdgeKind::Applet
        ));
        assert!(has(
            &l,
            "http://entrance.example/landing",
            EdgeKind::FormSubmit
        ));
        assert!(!l.iter().any(|l| l.url.ends_with("/ignored")));
    }

    #[test]
    fn scripts_that_write_or_redirect() {
        let l = page(
            r#"<script>document.write('<iframe src="http://w.example/" width=0 height=0></iframe>');</script>
               <body onload="window.location='http://onload.example/'">"#,
        );
        let w = l.iter().find(|l| l.url == "http://w.example/").unwrap();
        assert_eq!(w.edge, EdgeKind::JsWrite);
        assert!(w.flags.contains(&"tag:iframe".to_string()), "{w:?}");
        assert!(w.flags.contains(&"tiny".to_string()), "{w:?}");
        assert!(has(&l, "http://onload.example/", EdgeKind::JsLocation));
    }

    #[test]
    fn a_form_nobody_submits_is_no_edge() {
        let l = page(r#"<form action="/search"><input name=q></form>"#);
        assert!(l.is_empty(), "{l:?}");
    }
}
