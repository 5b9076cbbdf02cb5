//! The pages, written as HTML. Every value from outside (the name asked
//! for, the path, notes, evidence) goes through [`esc`]; the texts of
//! [`crate::lang`] are kanki's own. Hand-written rather than a template
//! engine: six small pages, and the escaping stays in view.

use chrono::{DateTime, Utc};
use kanki_indicators::{Category, Tlp};
use kanki_store::GardenMember;

use crate::lang::{Lang, Text, Texts};

pub use kanki_html::{esc, query_value};

/// A text with `{key}` placeholders filled by already-escaped values.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What the browser asked for.
#[derive(Clone, Debug)]
pub struct Site {
    /// The normalized host name.
    pub name: String,
    /// The URL to send the browser to after "proceed once".
    pub url: String,
    /// The path and query asked for (starts with `/`).
    pub path: String,
}

/// Why a name is blocked: the listed name that matched it and what the
/// store knows of the indicators listing it.
#[derive(Clone, Debug)]
pub struct Listing {
    pub matched: String,
    pub ids: Vec<i64>,
    pub indicators: Vec<IndicatorView>,
}

#[derive(Clone, Debug)]
pub struct IndicatorView {
    pub id: i64,
    pub category: Category,
    pub tlp: Tlp,
    pub sources: Vec<String>,
    pub first_seen: DateTime<Utc>,
    /// Short descriptions of the first few pieces of evidence.
    pub evidence: Vec<String>,
    pub evidence_total: usize,
}

impl Listing {
    fn category(&self) -> Category {
        self.indicators
            .first()
            .map_or(Category::Other, |i| i.category)
    }
}

/// Page-wide settings of one response.
pub struct Frame<'a> {
    pub lang: Lang,
    /// The nonce of this response's Content-Security-Policy.
    pub nonce: &'a str,
    /// The path of the same page in the other language.
    pub switch: Option<String>,
}

const STYLE: &str = "
body{margin:0;font-family:system-ui,'Hiragino Sans','Noto Sans CJK JP','IPAGothic',sans-serif;background:#f6f6f6;color:#1a1a1a;line-height:1.6}
header{background:#b00020;color:#fff;padding:1.2rem 1.5rem}header.garden{background:#8a4b00}header.calm{background:#35527a}
header h1{margin:0;font-size:1.6rem}main{max-width:46rem;margin:0 auto;padding:1rem 1.5rem 2rem}
nav.lang{text-align:right;padding:.4rem 1.5rem;background:#222}nav.lang a{color:#fff}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem 1.2rem;margin:1rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}dt{font-weight:bold}dd{margin:0;overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:.8rem;align-items:center;margin:1.2rem 0}
button{font:inherit;padding:.6rem 1.1rem;border-radius:5px;border:1px solid #888;background:#fff;cursor:pointer}
button.primary{background:#0b57d0;border-color:#0b57d0;color:#fff}button.risky{color:#b00020;border-color:#b00020}
textarea,input[type=text]{width:100%;box-sizing:border-box;font:inherit;padding:.4rem;margin:.2rem 0 .8rem}
.small{font-size:.9rem;color:#555}footer{font-size:.85rem;color:#555;margin-top:2rem}
";

/// The document around a page's body.
fn layout(
    f: &Frame,
    (title, heading): (&str, &str),
    header_class: &str,
    refresh: Option<&str>,
    body: &str,
) -> String {
    let t = f.lang.text();
    let switch = f.switch.as_ref().map_or(String::new(), |href| {
        format!(
            "<nav class=\"lang\"><a id=\"lang-switch\" hreflang=\"{code}\" href=\"{href}\">{label}</a></nav>",
            code = f.lang.other().code(),
            href = esc(href),
            label = t.switch_label
        )
    });
    let refresh = refresh.map_or(String::new(), |url| {
        format!(
            "<meta http-equiv=\"refresh\" content=\"30; url={}\">",
            esc(url)
        )
    });
    let head = format!("{refresh}{}", kanki_html::style(f.nonce, STYLE));
    let body = format!(
        "{switch}<header class=\"{header_class}\"><h1>{heading}</h1></header><main>{body}\
<footer>{footer}</footer></main>{script}",
        heading = esc(heading),
        footer = t.footer,
        script = kanki_html::script(
            f.nonce,
            "var b=document.getElementById('back');if(b){b.addEventListener('click',function(){if(history.length>1){history.back()}else{location.replace('about:blank')}})}"
        ),
    );
    kanki_html::Document {
        lang: f.lang,
        title,
        head: &head,
        body: &body,
    }
    .render()
}

/// The "why" block: the listed name, category, sources, first seen,
/// evidence and indicator ids. Details of an indicator not marked
/// TLP:CLEAR stay off the page (a subscriber is the public).
fn why(t: &Text, l: &Listing) -> String {
    let mut out = format!(
        "<section id=\"why\"><h2>{}</h2><dl><dt>{}</dt><dd id=\"matched\">{}{}</dd>",
        t.why_heading,
        t.blocked_site,
        esc(&l.matched),
        t.and_subdomains
    );
    for i in &l.indicators {
        out.push_str(&format!(
            "<dt>{}</dt><dd class=\"category\">{}</dd>",
            t.category,
            t.category_name(i.category)
        ));
        if i.tlp == Tlp::Clear {
            out.push_str(&format!(
                "<dt>{}</dt><dd class=\"sources\">{}</dd><dt>{}</dt><dd class=\"first-seen\">{}</dd><dt>{}</dt><dd class=\"evidence\">",
                t.sources,
                esc(&i.sources.join(", ")),
                t.first_seen,
                when(i.first_seen),
                t.evidence
            ));
            if i.evidence.is_empty() {
                out.push_str(t.no_evidence);
            } else {
                out.push_str("<ul>");
                for e in &i.evidence {
                    out.push_str(&format!("<li>{}</li>", esc(e)));
                }
                if i.evidence_total > i.evidence.len() {
                    let more = (i.evidence_total - i.evidence.len()).to_string();
                    out.push_str(&format!(
                        "<li>{}</li>",
                        fill(t.evidence_more, &[("n", &more)])
                    ));
                }
                out.push_str("</ul>");
            }
            out.push_str("</dd>");
        } else {
            out.push_str(&format!(
                "<dt>{}</dt><dd class=\"first-seen\">{}</dd><dd class=\"withheld\">{}</dd>",
                t.first_seen,
                when(i.first_seen),
                fill(t.withheld, &[("tlp", &i.tlp.to_string().to_uppercase())])
            ));
        }
        out.push_str(&format!(
            "<dt>{}</dt><dd class=\"indicator\">#{}</dd>",
            t.indicator, i.id
        ));
    }
    // Indicators the page did not load (more than a few list the name).
    let shown: Vec<i64> = l.indicators.iter().map(|i| i.id).collect();
    let rest: Vec<String> = l
        .ids
        .iter()
        .filter(|id| !shown.contains(id))
        .map(|id| format!("#{id}"))
        .collect();
    if !rest.is_empty() {
        out.push_str(&format!(
            "<dt>{}</dt><dd class=\"indicator\">{}</dd>",
            t.indicator,
            rest.join(", ")
        ));
    }
    out.push_str("</dl></section>");
    out
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
        esc(value)
    )
}

/// The warning: what was blocked and why; go back, proceed once, report.
pub fn warning(f: &Frame, site: &Site, l: &Listing, token: &str, minutes: u64) -> String {
    let t = f.lang.text();
    let name = esc(&site.name);
    let minutes = minutes.to_string();
    let lead = fill(
        t.warning_lead,
        &[
            ("name", &format!("<strong id=\"name\">{name}</strong>")),
            ("category", t.category_name(l.category())),
        ],
    );
    let body = format!(
        "<p class=\"lead\">{lead}</p>{why}\
<div class=\"actions\"><button id=\"back\" class=\"primary\" type=\"button\">{back}</button>\
<form method=\"post\" action=\"/_kanki/proceed\">{path}{token}{lang}\
<button id=\"proceed\" class=\"risky\" type=\"submit\">{proceed}</button></form></div>\
<p class=\"small\">{note}</p>\
<section id=\"report-section\"><h2>{rh}</h2><p>{rl}</p>\
<form id=\"report\" method=\"post\" action=\"/_kanki/report\">{path}{token}{lang}\
<label for=\"note\">{rn}</label><textarea id=\"note\" name=\"note\" rows=\"3\" maxlength=\"{NOTE_MAX}\" required></textarea>\
<label for=\"contact\">{rc}</label><input type=\"text\" id=\"contact\" name=\"contact\" maxlength=\"{CONTACT_MAX}\">\
<button id=\"send-report\" type=\"submit\">{rs}</button></form></section>",
        why = why(t, l),
        back = t.go_back,
        path = hidden("path", &site.path),
        token = hidden("token", token),
        lang = hidden("lang", f.lang.code()),
        proceed = t.proceed,
        note = fill(t.proceed_note, &[("name", &name), ("minutes", &minutes)]),
        rh = t.report_heading,
        rl = t.report_lead,
        rn = t.report_note,
        rc = t.report_contact,
        rs = t.report_send,
    );
    layout(f, (t.warning_title, t.warning_heading), "", None, &body)
}

/// Longest note and contact a form may carry, in characters.
pub const NOTE_MAX: usize = 2000;
pub const CONTACT_MAX: usize = 200;

/// Shown to a client that holds a pass for the name but whose browser
/// still has the warning address cached.
pub fn pass(f: &Frame, site: &Site, minutes: u64) -> String {
    let t = f.lang.text();
    let body = format!(
        "<section id=\"pass-granted\"><p>{}</p><p><a id=\"retry\" href=\"{}\">{}</a></p></section>",
        fill(
            t.pass_body,
            &[
                ("name", &esc(&site.name)),
                ("minutes", &minutes.to_string())
            ]
        ),
        esc(&site.url),
        t.retry_now
    );
    layout(
        f,
        (t.pass_title, t.pass_title),
        "calm",
        Some(&site.url),
        &body,
    )
}

/// The address asked for a name that is not blocked (a browser's cached
/// answer after a delisting, or someone opening the warning address).
pub fn not_listed(f: &Frame, name: Option<&str>) -> String {
    let t = f.lang.text();
    let body = format!(
        "<section id=\"not-listed\"><p>{}</p></section>",
        fill(t.not_listed_body, &[("name", &esc(name.unwrap_or("-")))])
    );
    layout(
        f,
        (t.not_listed_title, t.not_listed_title),
        "calm",
        None,
        &body,
    )
}

/// What a subscriber in the walled garden sees, whatever they asked for.
pub struct GardenView<'a> {
    pub member: &'a GardenMember,
    pub site: Option<&'a Site>,
    pub listing: Option<&'a Listing>,
    pub countermeasure: Option<&'a str>,
    pub allowed: &'a [String],
}

pub fn garden(f: &Frame, g: &GardenView) -> String {
    let t = f.lang.text();
    let notice = g.member.notice.as_deref().map_or_else(
        || t.garden_default_notice.to_string(),
        |n| linked(&esc(n)).replace('\n', "<br>"),
    );
    let mut body = format!(
        "<p class=\"lead\">{}</p><section id=\"garden\"><h2>{}</h2><p id=\"notice\">{}</p>\
<dl><dt>{}</dt><dd>{}</dd></dl></section>",
        t.garden_lead,
        t.garden_notice_heading,
        notice,
        t.garden_since,
        when(g.member.entered_at)
    );
    body.push_str(&format!(
        "<section id=\"leave\"><h2>{}</h2><p>{}</p>",
        t.garden_how_heading, t.garden_how
    ));
    if let Some(url) = g.countermeasure {
        body.push_str(&format!(
            "<p><a id=\"countermeasure\" href=\"{}\">{}</a></p>",
            esc(url),
            t.garden_countermeasure
        ));
    }
    if !g.allowed.is_empty() {
        let names: Vec<String> = g.allowed.iter().map(|n| esc(n)).collect();
        body.push_str(&format!(
            "<p class=\"small\">{} {}</p>",
            t.garden_allowed,
            names.join(", ")
        ));
    }
    // The one "I have cleaned my machine" of kanki is the countermeasure
    // site's: with the notice's reference it lets the subscriber out at
    // once; without one (an operator put them here) it asks the operator.
    match (&g.member.reference, g.member.leave_requested_at) {
        (None, Some(at)) => body.push_str(&format!(
            "<p id=\"leave-requested\">{}</p>",
            fill(t.garden_requested, &[("at", &when(at))])
        )),
        (reference, _) => body.push_str(&format!(
            "<form id=\"cleaned\" method=\"post\" action=\"{}/ack?lang={}\">{}\
<label for=\"cleaned-note\">{}</label><textarea id=\"cleaned-note\" name=\"note\" rows=\"2\" maxlength=\"{NOTE_MAX}\"></textarea>\
<button id=\"send-cleaned\" class=\"primary\" type=\"submit\">{}</button></form>",
            crate::COUNTERMEASURES,
            f.lang.code(),
            reference.as_deref().map_or(String::new(), |r| format!(
                "<p>{} <strong id=\"reference\">{}</strong></p>{}",
                t.garden_reference,
                esc(r),
                hidden("reference", r)
            )),
            t.garden_cleaned_note,
            t.garden_cleaned_send
        )),
    }
    body.push_str("</section>");
    if let (Some(site), Some(l)) = (g.site, g.listing) {
        body.push_str(&format!(
            "<p>{}</p>{}",
            fill(
                t.garden_also_listed,
                &[
                    ("name", &esc(&site.name)),
                    ("category", t.category_name(l.category()))
                ]
            ),
            why(t, l)
        ));
    }
    layout(
        f,
        (t.garden_heading, t.garden_heading),
        "garden",
        None,
        &body,
    )
}

/// A short page after a form: a title, a message (kanki's own text, with
/// values already escaped), and a link back to the page.
pub fn message(f: &Frame, id: &str, title: &str, text: &str, back: &str) -> String {
    let t = f.lang.text();
    let body = format!(
        "<section id=\"{id}\"><p>{text}</p><p><a id=\"back-to-page\" href=\"{}\">{}</a></p></section>",
        esc(back),
        t.back_to_page
    );
    layout(f, (title, title), "calm", None, &body)
}

/// Escaped text with its http(s) URLs made links: a notice names the
/// family's countermeasure page, which the garden lets the subscriber
/// reach. A URL ends at a space, a character outside ASCII (Japanese text
/// often follows one directly), an escaped quote or bracket, and trailing
/// punctuation is left outside it.
fn linked(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(start) = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let mut end = tail
            .char_indices()
            .find(|&(i, c)| {
                c.is_whitespace()
                    || !c.is_ascii()
                    || ["&quot;", "&#39;", "&lt;", "&gt;"]
                        .iter()
                        .any(|e| tail[i..].starts_with(e))
            })
            .map_or(tail.len(), |(i, _)| i);
        end -= tail[..end].len()
            - tail[..end]
                .trim_end_matches(['.', ',', ')', ';', ':', '!', '?'])
                .len();
        let url = &tail[..end];
        if url
            .split_once("://")
            .is_some_and(|(_, host)| !host.is_empty())
        {
            out.push_str(&format!("<a href=\"{url}\">{url}</a>"));
        } else {
            out.push_str(url);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_s_urls_are_links() {
        let notice = "手順は https://cc.isp.example/families/mirai?ref=N-1&lang=ja をご覧ください。\n\
                      English: https://cc.isp.example/families/mirai. \"http://x.example/a\"";
        assert_eq!(
            linked(&esc(notice)),
            "手順は <a href=\"https://cc.isp.example/families/mirai?ref=N-1&amp;lang=ja\">\
             https://cc.isp.example/families/mirai?ref=N-1&amp;lang=ja</a> をご覧ください。\n\
             English: <a href=\"https://cc.isp.example/families/mirai\">https://cc.isp.example/families/mirai</a>. \
             &quot;<a href=\"http://x.example/a\">http://x.example/a</a>&quot;"
        );
        // A bare scheme, and text with no URL, stay text.
        assert_eq!(linked("see https:// only"), "see https:// only");
        assert_eq!(linked("ありがとう"), "ありがとう");
        // A URL directly followed by Japanese text ends there.
        assert_eq!(
            linked("https://a.example/xをご覧"),
            "<a href=\"https://a.example/x\">https://a.example/x</a>をご覧"
        );
    }
}
