//! Static analysis of the usual JavaScript forms of a drive-by redirect.
//!
//! No JavaScript is run. The text is peeled of the simple encodings that
//! injected scripts use (string concatenation, `\x`/`\u` escapes,
//! `unescape`, `decodeURIComponent`, `atob`, `String.fromCharCode`), a few
//! layers deep, and every layer is searched for location changes,
//! `window.open`, written or created `<iframe>`/`<script>` elements and form
//! submission. What a real engine would do with dynamic code is out of
//! reach by design: the crawler records what it could see.

use std::collections::HashMap;
use std::sync::LazyLock;

use data_encoding::BASE64;
use regex::Regex;

/// A piece of script text and the decodings that revealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub text: String,
    /// E.g. `["atob", "unescape"]`: outermost first. Empty for the source.
    pub decoded_by: Vec<&'static str>,
}

/// What a script points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsTarget {
    /// `location = ...`, `location.href = ...`, `location.replace(...)`.
    Location(String),
    /// `window.open(...)`.
    WindowOpen(String),
    /// `el.src = ...` on an element the script creates (`createElement`).
    CreatedElement { tag: String, url: String },
    /// Markup the script writes (`document.write`) or decodes: to be read as HTML.
    Markup(String),
    /// `form.submit()` is called somewhere.
    SubmitsForm,
}

/// Decoding layers kept per script, and bytes of decoded text in all.
const MAX_LAYERS: usize = 64;
const MAX_DECODED_BYTES: usize = 4 << 20;
const MAX_ROUNDS: usize = 4;

macro_rules! re {
    ($name:ident, $re:literal) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| Regex::new($re).expect("valid regex"));
    };
}

re!(CONCAT, r#"(?:"\s*\+\s*")|(?:'\s*\+\s*')"#);
re!(
    UNESCAPE,
    r#"(?:unescape|decodeURIComponent|decodeURI)\s*\(\s*(?:"([^"]*)"|'([^']*)')\s*\)"#
);
re!(
    ATOB,
    r#"atob\s*\(\s*(?:"([A-Za-z0-9+/=\s]*)"|'([A-Za-z0-9+/=\s]*)')\s*\)"#
);
re!(
    FROM_CHAR_CODE,
    r"String\s*\.\s*fromCharCode\s*\(\s*((?:(?:0[xX][0-9a-fA-F]+|\d+)\s*,\s*)*(?:0[xX][0-9a-fA-F]+|\d+))\s*\)"
);
re!(
    ESCAPED_LITERAL,
    r#""((?:[^"\\]|\\.)*\\[xu](?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*\\[xu](?:[^'\\]|\\.)*)'"#
);
re!(
    LOCATION,
    r#"(?:\b(?:window|document|top|self|parent)\s*\.\s*)?\blocation(?:\s*\.\s*href)?\s*=\s*(?:"([^"]+)"|'([^']+)')"#
);
re!(
    LOCATION_CALL,
    r#"\blocation\s*\.\s*(?:replace|assign)\s*\(\s*(?:"([^"]+)"|'([^']+)')"#
);
re!(
    WINDOW_OPEN,
    r#"\bwindow\s*\.\s*open\s*\(\s*(?:"([^"]+)"|'([^']+)')"#
);
re!(
    DOCUMENT_WRITE,
    r#"\bdocument\s*\.\s*write(?:ln)?\s*\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"#
);
re!(
    CREATE_ELEMENT,
    r#"createElement\s*\(\s*["'](iframe|script|frame|embed|object)["']\s*\)"#
);
re!(
    SRC_ASSIGN,
    r#"\.\s*(?:src|data)\s*=\s*(?:"([^"]+)"|'([^']+)')"#
);
re!(SUBMIT, r"\.\s*submit\s*\(\s*\)");
// A name where a value goes (after `(`, `=`, `,` or `+`).
re!(NAME_USE, r"[(=,+]\s*([A-Za-z_$][\w$]*)");
re!(
    STRING_VAR,
    r#"\b(?:var|let|const)\s+([A-Za-z_$][\w$]*)\s*=\s*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')\s*[;,\n]"#
);

fn either(c: &regex::Captures<'_>) -> String {
    c.get(1)
        .or_else(|| c.get(2))
        .map(|m| m.as_str().to_string())
        .unwrap_or_default()
}

/// A captured URL literal, its escapes undone.
fn url_of(c: &regex::Captures<'_>) -> String {
    unescape_literal(&either(c))
}

/// `%XX` and `%uXXXX` (what `unescape` undoes).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut bytes = Vec::new();
    let mut i = 0;
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    while i < b.len() {
        if b[i] == b'%' {
            if b.get(i + 1) == Some(&b'u')
                && let Some(h) = s.get(i + 2..i + 6)
                && let Ok(n) = u32::from_str_radix(h, 16)
            {
                flush(&mut bytes, &mut out);
                out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                i += 6;
                continue;
            }
            if let Some(h) = s.get(i + 1..i + 3)
                && let Ok(n) = u8::from_str_radix(h, 16)
            {
                bytes.push(n);
                i += 3;
                continue;
            }
        }
        flush(&mut bytes, &mut out);
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(c);
        i += c.len_utf8().max(1);
    }
    flush(&mut bytes, &mut out);
    out
}

/// The escapes of a JavaScript string literal: `\xNN`, `\uNNNN`, `\u{N}`,
/// `\n` and friends, `\/`.
pub fn unescape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('x') => {
                let h: String = it.by_ref().take(2).collect();
                match u32::from_str_radix(&h, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&h),
                }
            }
            Some('u') => {
                let h: String = if it.peek() == Some(&'{') {
                    it.next();
                    it.by_ref().take_while(|c| *c != '}').take(6).collect()
                } else {
                    it.by_ref().take(4).collect()
                };
                match u32::from_str_radix(&h, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&h),
                }
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The script and every layer its simple encodings hide, bounded.
pub fn layers(source: &str) -> Vec<Layer> {
    let mut layers = vec![Layer {
        text: CONCAT.replace_all(source, "").into_owned(),
        decoded_by: Vec::new(),
    }];
    let mut budget = MAX_DECODED_BYTES;
    let mut start = 0;
    for _ in 0..MAX_ROUNDS {
        let end = layers.len();
        for i in start..end {
            let text = &layers[i].text;
            let mut found: Vec<(String, &'static str)> = decodings(text)
                .into_iter()
                .map(|(_, decoded, how)| (decoded, how))
                .collect();
            for c in ESCAPED_LITERAL.captures_iter(text) {
                found.push((unescape_literal(&either(&c)), "escapes"));
            }
            // The same text with each decoding written back as a string
            // literal (`location.href = String.fromCharCode(...)`), and with
            // string variables put where they are used (`var s = '...';
            // eval(atob(s))`).
            if let Some((t, how)) = substituted(text) {
                found.push((t, how));
            }
            if let Some(t) = inline_variables(text) {
                found.push((t, "variables"));
            }
            for (text, how) in found {
                if layers.len() >= MAX_LAYERS || text.len() > budget {
                    return layers;
                }
                if text.trim().is_empty() || layers.iter().any(|l| l.text == text) {
                    continue;
                }
                budget -= text.len();
                let mut decoded_by = layers[i].decoded_by.clone();
                decoded_by.push(how);
                layers.push(Layer {
                    text: CONCAT.replace_all(&text, "").into_owned(),
                    decoded_by,
                });
            }
        }
        if layers.len() == end {
            break;
        }
        start = end;
    }
    layers
}

/// The decoding calls of a text: where each is, what it decodes to, and
/// the decoding's name.
fn decodings(text: &str) -> Vec<(std::ops::Range<usize>, String, &'static str)> {
    let mut out = Vec::new();
    for c in UNESCAPE.captures_iter(text) {
        let whole = c.get(0).expect("a match").range();
        out.push((whole, percent_decode(&either(&c)), "unescape"));
    }
    for c in ATOB.captures_iter(text) {
        let clean: String = either(&c).split_whitespace().collect();
        // Padding may be missing; add it back.
        let padded = format!("{clean}{}", "=".repeat((4 - clean.len() % 4) % 4));
        if let Ok(bytes) = BASE64.decode(padded.as_bytes()) {
            let whole = c.get(0).expect("a match").range();
            out.push((whole, String::from_utf8_lossy(&bytes).into_owned(), "atob"));
        }
    }
    for c in FROM_CHAR_CODE.captures_iter(text) {
        let s: String = c[1]
            .split(',')
            .filter_map(|n| {
                let n = n.trim();
                let v = match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => n.parse().ok(),
                };
                v.and_then(char::from_u32)
            })
            .collect();
        let whole = c.get(0).expect("a match").range();
        out.push((whole, s, "String.fromCharCode"));
    }
    out
}

/// A double-quoted JavaScript literal of `s`.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            _ => q.push(c),
        }
    }
    q.push('"');
    q
}

/// `text` with every decoding call replaced by the literal it yields, and
/// the name of the first decoding; `None` when there is none.
fn substituted(text: &str) -> Option<(String, &'static str)> {
    let mut calls = decodings(text);
    calls.sort_by_key(|(r, _, _)| r.start);
    let how = calls.first()?.2;
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (r, decoded, _) in calls {
        if r.start < at {
            continue; // overlapping matches: the first one wins
        }
        out.push_str(&text[at..r.start]);
        out.push_str(&quoted(&decoded));
        at = r.end;
    }
    out.push_str(&text[at..]);
    Some((out, how))
}

/// String variables defined once and used as a whole argument or value
/// (`f(NAME)`, `= NAME;`), replaced by their literal. At most 32 names, in
/// one pass over the text with one regex (not a regex compiled per name:
/// this runs on every decoding layer of every script).
fn inline_variables(text: &str) -> Option<String> {
    let mut vars: HashMap<&str, &str> = HashMap::new();
    for c in STRING_VAR.captures_iter(text).take(32) {
        let (Some(name), Some(literal)) = (c.get(1), c.get(2)) else {
            continue;
        };
        vars.entry(name.as_str()).or_insert(literal.as_str());
    }
    if vars.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for c in NAME_USE.captures_iter(text) {
        let Some(m) = c.get(1) else { continue };
        let Some(literal) = vars.get(m.as_str()) else {
            continue;
        };
        // Used whole: what follows (spaces aside) ends the value.
        let rest = &text[m.end()..];
        let after = rest.trim_start();
        let whole = rest[..rest.len() - after.len()].contains('\n')
            || after.starts_with([')', ';', ',', '+']);
        if !whole {
            continue;
        }
        out.push_str(&text[at..m.start()]);
        out.push_str(literal);
        at = m.end();
    }
    if at == 0 {
        return None;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// What one layer of script text points at.
pub fn targets(text: &str) -> Vec<JsTarget> {
    let mut out = Vec::new();
    for c in LOCATION.captures_iter(text) {
        out.push(JsTarget::Location(url_of(&c)));
    }
    for c in LOCATION_CALL.captures_iter(text) {
        out.push(JsTarget::Location(url_of(&c)));
    }
    for c in WINDOW_OPEN.captures_iter(text) {
        out.push(JsTarget::WindowOpen(url_of(&c)));
    }
    for c in DOCUMENT_WRITE.captures_iter(text) {
        out.push(JsTarget::Markup(unescape_literal(&either(&c))));
    }
    if let Some(c) = CREATE_ELEMENT.captures(text) {
        let tag = c[1].to_ascii_lowercase();
        for s in SRC_ASSIGN.captures_iter(text) {
            out.push(JsTarget::CreatedElement {
                tag: tag.clone(),
                url: url_of(&s),
            });
        }
    }
    if SUBMIT.is_match(text) {
        out.push(JsTarget::SubmitsForm);
    }
    // A decoded layer that is itself markup (`document.write(unescape(...))`).
    let lower = text.trim_start().get(..1).unwrap_or("");
    if lower == "<" {
        out.push(JsTarget::Markup(text.to_string()));
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_targets(js: &str) -> Vec<(JsTarget, Vec<&'static str>)> {
        layers(js)
            .into_iter()
            .flat_map(|l| {
                targets(&l.text)
                    .into_iter()
                    .map(move |t| (t, l.decoded_by.clone()))
            })
            .collect()
    }

    #[test]
    fn plain_location_changes() {
        let t = all_targets(r#"window.location.href = "http://a.example/x"; top.location='/y';"#);
        assert!(t.contains(&(JsTarget::Location("http://a.example/x".into()), vec![])));
        assert!(t.contains(&(JsTarget::Location("/y".into()), vec![])));
        let t = all_targets(r#"location.replace("http://b.example/"); window.open('/pop')"#);
        assert!(t.contains(&(JsTarget::Location("http://b.example/".into()), vec![])));
        assert!(t.contains(&(JsTarget::WindowOpen("/pop".into()), vec![])));
    }

    #[test]
    fn encodings_are_peeled() {
        // atob of `location="http://c.example/"`.
        let b64 = BASE64.encode(br#"location="http://c.example/""#);
        let t = all_targets(&format!("eval(atob('{b64}'))"));
        assert!(
            t.contains(&(JsTarget::Location("http://c.example/".into()), vec!["atob"])),
            "{t:?}"
        );
        let t = all_targets(
            r#"document.write(unescape("%3Ciframe%20src%3D%22http%3A//d.example/%22%3E"))"#,
        );
        assert!(
            t.iter().any(
                |(x, by)| matches!(x, JsTarget::Markup(m) if m.contains("d.example"))
                    && by == &vec!["unescape"]
            ),
            "{t:?}"
        );
        let codes: Vec<String> = "location='/z'".bytes().map(|b| b.to_string()).collect();
        let t = all_targets(&format!("eval(String.fromCharCode({}))", codes.join(",")));
        assert!(
            t.contains(&(JsTarget::Location("/z".into()), vec!["String.fromCharCode"])),
            "{t:?}"
        );
        // A string variable is followed to where it is used.
        let t = all_targets(r#"var u = "\x68ttp://e.exa" + "mple/"; window.location = u;"#);
        assert!(
            t.iter()
                .any(|(x, _)| x == &JsTarget::Location("http://e.example/".into())),
            "{t:?}"
        );
        let b64 = BASE64.encode(br#"document.write('<iframe src="/tds"></iframe>')"#);
        let t = all_targets(&format!(
            "(function(){{ var s = '{b64}'; eval(atob(s)); }})();"
        ));
        assert!(
            t.iter().any(
                |(x, by)| matches!(x, JsTarget::Markup(m) if m.contains("/tds"))
                    && by.contains(&"atob")
            ),
            "{t:?}"
        );
        // A decoding's result written back where the call was.
        let codes: Vec<String> = "/p.exe".bytes().map(|b| b.to_string()).collect();
        let t = all_targets(&format!(
            "location.href = String.fromCharCode({});",
            codes.join(",")
        ));
        assert!(
            t.contains(&(
                JsTarget::Location("/p.exe".into()),
                vec!["String.fromCharCode"]
            )),
            "{t:?}"
        );
        let t = all_targets(r#"location = "\x68ttp://e.exa" + "mple/";"#);
        assert!(
            t.iter()
                .any(|(x, _)| x == &JsTarget::Location("http://e.example/".into())),
            "{t:?}"
        );
    }

    #[test]
    fn string_variables_are_put_where_they_are_used() {
        let src =
            "var a = 'http://g.example/'; var b = '_top';\nvar n = a\nwindow.open(a, b); x = na;";
        assert_eq!(
            inline_variables(src).unwrap(),
            "var a = 'http://g.example/'; var b = '_top';\nvar n = 'http://g.example/'\nwindow.open('http://g.example/', '_top'); x = na;"
        );
        // Only the first definition counts; a name inside another is no use.
        assert_eq!(
            inline_variables("let u = \"/1\"; let u = \"/2\"; go(u); go(ux);").unwrap(),
            "let u = \"/1\"; let u = \"/2\"; go(\"/1\"); go(ux);"
        );
        assert!(inline_variables("var a = 'x'; f(a.b)").is_none());
    }

    #[test]
    fn created_elements_and_forms() {
        let t = all_targets(
            r#"var f=document.createElement('iframe'); f.src="http://f.example/"; document.forms[0].submit();"#,
        );
        assert!(t.iter().any(|(x, _)| x
            == &JsTarget::CreatedElement {
                tag: "iframe".into(),
                url: "http://f.example/".into()
            }));
        assert!(t.iter().any(|(x, _)| x == &JsTarget::SubmitsForm));
    }

    #[test]
    fn decoding_is_bounded() {
        // A layer that decodes to itself plus more must stop.
        let mut js = String::from("atob('");
        js.push_str(&"QUFB".repeat(100_000));
        js.push_str("')");
        let l = layers(&js);
        assert!(l.len() <= MAX_LAYERS);
    }
}
