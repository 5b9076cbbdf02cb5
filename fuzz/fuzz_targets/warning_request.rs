#![no_main]

use chrono::{TimeZone, Utc};
use kanki_indicators::{Category, Tlp};
use kanki_warning::lang::Lang;
use kanki_warning::page::{self, Frame, IndicatorView, Listing, Site};
use kanki_warning::request::{clean_path, clean_text, host_of};
use libfuzzer_sys::fuzz_target;

// What a browser sends the warning page, lines apart: Host, Accept-Language,
// path, a form's note. Each is read as the page reads it, then the page is
// written with them: whatever they hold, it keeps its one script element
// and the redirect target stays on the host asked for.
fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.splitn(4, '\n');
    let (host, accept, path, note) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let lang = Lang::negotiate(accept).unwrap_or(Lang::Ja);
    let path = clean_path(path);
    assert!(path.starts_with('/'));
    let note = clean_text(note);
    assert!(!note.chars().any(|c| c.is_control() && c != '\n'));
    let Some(h) = host_of(host) else {
        return;
    };
    let url = format!("http://{}{}", h.authority, path);
    let parsed = url::Url::parse(&url).expect("the redirect target is a URL");
    assert_eq!(parsed.host_str(), Some(h.name.as_str()), "{url}");
    let site = Site {
        name: h.name.clone(),
        url,
        path: path.clone(),
    };
    let listing = Listing {
        matched: h.name.clone(),
        ids: vec![1, 2],
        indicators: vec![IndicatorView {
            id: 1,
            category: Category::MalwareDistribution,
            tlp: Tlp::Clear,
            sources: vec![note.clone()],
            first_seen: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
            evidence: vec![note.clone()],
            evidence_total: 4,
        }],
    };
    let frame = Frame {
        lang,
        nonce: "n",
        switch: Some(format!(
            "/_kanki/warning?lang=en&path={}",
            page::query_value(&path)
        )),
    };
    let html = page::warning(&frame, &site, &listing, "t", 10);
    assert_eq!(html.matches("<script").count(), 1, "markup got in: {html}");
    assert_eq!(html.matches("<form").count(), 2, "markup got in: {html}");
});
