//! X-ARF v4 abuse reports: the JSON report (`{"Version": "4",
//! "ReporterInfo": {...}, "Report": {...}}`), alone or inside an abuse
//! mail. A mail is taken apart by `mailparse` (MIME parts, base64 and
//! quoted-printable, charsets, attached messages), and each part's decoded
//! body is searched for JSON objects with a `Report` that start a line.
//! Several reports in one input are read one after another. The raw record
//! kept is the report's JSON as decoded, so the same report sent again in
//! another encoding is the same event.

use std::io::{BufRead, Read};

use mailparse::ParsedMail;

/// Largest input read.
const MAX_BYTES: u64 = 4 << 20;

use serde_json::Value;

use crate::{Event, EventsError, Item, Items, Notes, Skipped, parse_time};

/// RSIT taxonomy and type of an X-ARF report type.
fn class_of(report_type: &str) -> (&'static str, &'static str) {
    match report_type.to_ascii_lowercase().as_str() {
        "malware" | "botnet" | "bot" | "c&c" | "cnc" => ("malicious-code", "infected-system"),
        "loginattack" | "login-attack" | "bruteforce" => ("intrusion-attempts", "brute-force"),
        "portscan" | "scanning" | "scan" => ("information-gathering", "scanner"),
        "spam" => ("abusive-content", "spam"),
        "ddos" | "dos" => ("availability", "ddos"),
        "phishing" => ("fraud", "phishing"),
        "vulnerable" | "opendns" | "openresolver" => ("vulnerable", "vulnerable-system"),
        _ => ("other", "other"),
    }
}

/// Reads every X-ARF v4 report in the input.
pub fn parse_xarf(mut input: Box<dyn BufRead + Send>) -> Result<(Notes, Items), EventsError> {
    let mut text = Vec::new();
    (&mut input).take(MAX_BYTES + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(EventsError::Input(format!(
            "an X-ARF input larger than {MAX_BYTES} bytes: an abuse report is a mail, not a dump"
        )));
    }
    let mut items = Vec::new();
    let mut n = 0u64;
    for body in bodies(&text) {
        n += reports_in(&String::from_utf8_lossy(&body), &mut items);
    }
    if n == 0 {
        items.push(Item::Skipped(Skipped {
            line: 1,
            reason: "no X-ARF report (a JSON object with a Report) in the input".into(),
        }));
    }
    Ok((Notes::default(), Box::new(items.into_iter().map(Ok))))
}

/// Attached messages opened at most this deep.
const MAX_NESTING: usize = 8;

/// The texts to search: the decoded body of each part of a mail, or the
/// input itself when it is a bare report (or nothing a mail parser reads).
fn bodies(raw: &[u8]) -> Vec<Vec<u8>> {
    if raw.trim_ascii_start().starts_with(b"{") {
        return vec![raw.to_vec()];
    }
    let mut out = Vec::new();
    if let Ok(m) = mailparse::parse_mail(raw) {
        collect(&m, &mut out, 0);
    }
    if out.is_empty() {
        out.push(raw.to_vec());
    }
    out
}

/// The decoded bodies of a mail's leaf parts: text in its charset, other
/// parts as their transfer encoding gives them; an attached message is
/// opened in turn.
fn collect(m: &ParsedMail<'_>, out: &mut Vec<Vec<u8>>, depth: usize) {
    if !m.subparts.is_empty() {
        for p in &m.subparts {
            collect(p, out, depth);
        }
        return;
    }
    let mime = m.ctype.mimetype.to_ascii_lowercase();
    if mime == "message/rfc822" && depth < MAX_NESTING {
        if let Ok(inner) = m.get_body_raw()
            && let Ok(inner) = mailparse::parse_mail(&inner)
        {
            collect(&inner, out, depth + 1);
        }
        return;
    }
    let body = if mime.starts_with("text/") {
        m.get_body().map(String::into_bytes)
    } else {
        m.get_body_raw()
    };
    if let Ok(b) = body {
        out.push(b);
    }
}

/// Reads the reports in one text (each a JSON object with a `Report`,
/// starting a line) into `items`; returns how many.
fn reports_in(text: &str, items: &mut Vec<Item>) -> u64 {
    let mut at = 0;
    let mut n = 0;
    while let Some(off) = text[at..].find('{') {
        let start = at + off;
        // A report starts a line (a MIME part's body, or the input).
        if !text[..start].trim_end_matches([' ', '\t']).is_empty()
            && !text[..start].trim_end_matches([' ', '\t']).ends_with('\n')
        {
            at = start + 1;
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match de.next() {
            Some(Ok(v)) if v.get("Report").is_some() => {
                n += 1;
                let end = start + de.byte_offset();
                let line = text[..start].matches('\n').count() as u64 + 1;
                items.push(report(&v, text.as_bytes()[start..end].to_vec(), line));
                at = end;
            }
            _ => at = start + 1,
        }
    }
    n
}

fn report(v: &Value, raw: Vec<u8>, line: u64) -> Item {
    let skip = |reason: &str| {
        Item::Skipped(Skipped {
            line,
            reason: reason.to_string(),
        })
    };
    let version = match &v["Version"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if !version.starts_with('4') {
        return skip(&format!(
            "X-ARF version {version:?}: only version 4 is read"
        ));
    }
    let r = &v["Report"];
    let s = |k: &str| r.get(k).and_then(Value::as_str);
    let port = |k: &str| {
        r.get(k).and_then(|p| match p {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    };
    let source_type = s("SourceType").unwrap_or("ip-address");
    if !source_type.eq_ignore_ascii_case("ip-address") && !source_type.eq_ignore_ascii_case("ip") {
        return skip(&format!(
            "SourceType {source_type:?}: only ip-address reports name a subscriber"
        ));
    }
    let Some(ip) = s("Source").and_then(|a| a.trim().parse().ok()) else {
        return skip("Report.Source is missing or not an address");
    };
    let Some(t) = s("Date").and_then(parse_time) else {
        return skip("Report.Date is missing or not a time");
    };
    let report_type = s("ReportType").unwrap_or("");
    let (taxonomy, class) = class_of(report_type);
    let reporter = v["ReporterInfo"]
        .get("ReporterOrg")
        .and_then(Value::as_str)
        .unwrap_or("unknown reporter");
    let mut e = Event::new(ip, t, taxonomy, class, "X-ARF", reporter);
    e.source_port = port("SourcePort");
    e.destination_ip = s("DestinationIp").and_then(|a| a.parse().ok());
    e.destination_port = port("DestinationPort").or_else(|| port("Port"));
    e.identifier = Some(report_type.to_ascii_lowercase()).filter(|x| !x.is_empty());
    e.malware = s("MalwareFamily")
        .or_else(|| s("Family"))
        .map(str::to_lowercase);
    e.application = s("Service").map(str::to_lowercase);
    if let Some(c) = s("ReportClass") {
        e.extra.insert("extra.report_class".into(), c.to_string());
    }
    if let Some(m) = v["ReporterInfo"]
        .get("ReporterOrgEmail")
        .and_then(Value::as_str)
    {
        e.extra.insert("extra.reporter_email".into(), m.to_string());
    }
    e.raw = raw;
    Item::Event(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_in_a_mail() {
        let mail = "From: abuse@reporter.example\nSubject: abuse report\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nSee the report {not json}.\n--b\nContent-Type: application/json\n\n{\"Version\":\"4\",\"ReporterInfo\":{\"ReporterOrg\":\"Reporter\",\"ReporterOrgEmail\":\"abuse@reporter.example\"},\"Disclosure\":true,\"Report\":{\"ReportClass\":\"Activity\",\"ReportType\":\"LoginAttack\",\"Date\":\"2024-05-01T10:00:00Z\",\"SourceType\":\"ip-address\",\"Source\":\"192.0.2.44\",\"SourcePort\":5555,\"DestinationIp\":\"203.0.113.1\",\"Service\":\"ssh\",\"Port\":22}}\n--b--\n";
        let (_, items) =
            parse_xarf(Box::new(std::io::Cursor::new(mail.as_bytes().to_vec()))).unwrap();
        let items: Vec<Item> = items.map(Result::unwrap).collect();
        assert_eq!(items.len(), 1);
        let Item::Event(e) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(e.source_ip.to_string(), "192.0.2.44");
        assert_eq!(e.source_port, Some(5555));
        assert_eq!(e.class, "brute-force");
        assert_eq!(e.destination_port, Some(22));
        assert_eq!(e.feed_provider, "Reporter");
    }

    const REPORT: &str = "{\"Version\":\"4\",\"ReporterInfo\":{\"ReporterOrg\":\"Reporter\"},\"Report\":{\"ReportClass\":\"Activity\",\"ReportType\":\"Malware\",\"MalwareFamily\":\"Emotet\",\"Date\":\"2024-05-01T10:00:00Z\",\"SourceType\":\"ip-address\",\"Source\":\"192.0.2.45\",\"SourcePort\":49152}}";

    fn events(input: &str) -> Vec<Event> {
        let (_, items) =
            parse_xarf(Box::new(std::io::Cursor::new(input.as_bytes().to_vec()))).unwrap();
        items
            .map(Result::unwrap)
            .filter_map(|i| match i {
                Item::Event(e) => Some(*e),
                Item::Skipped(_) => None,
            })
            .collect()
    }

    fn mail(part_headers: &str, part_body: &str) -> String {
        format!(
            "From: abuse@reporter.example\r\nSubject: abuse report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attached report.\r\n--b1\r\n{part_headers}\r\n\r\n{part_body}\r\n--b1--\r\n"
        )
    }

    #[test]
    fn reports_in_base64_and_quoted_printable_parts_are_the_same_event() {
        // Base64 with line breaks every 76 characters, as mailers write it.
        let b64 = data_encoding::BASE64_MIME.encode(REPORT.as_bytes());
        let base64 = mail(
            "Content-Type: application/json\r\nContent-Transfer-Encoding: base64",
            &b64,
        );
        // Quoted-printable: `=` as =3D, and a soft line break in the middle.
        let qp = REPORT.replace('=', "=3D");
        let qp = format!("{}=\r\n{}", &qp[..60], &qp[60..]);
        let quoted = mail(
            "Content-Type: application/json; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
            &qp,
        );
        // And attached as a whole message (message/rfc822), base64 inside.
        let forwarded = mail("Content-Type: message/rfc822", &base64);
        let mut seen = Vec::new();
        for input in [&base64, &quoted, &forwarded, &REPORT.to_string()] {
            let e = events(input);
            assert_eq!(e.len(), 1, "{input}");
            assert_eq!(e[0].source_ip.to_string(), "192.0.2.45");
            assert_eq!(e[0].malware.as_deref(), Some("emotet"));
            assert_eq!(e[0].class, "infected-system");
            seen.push(e[0].key());
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "one report, one key");
    }

    #[test]
    fn other_versions_and_no_report_are_reported() {
        for text in ["{\"Version\":\"0.2\",\"Report\":{}}", "hello"] {
            let (_, items) =
                parse_xarf(Box::new(std::io::Cursor::new(text.as_bytes().to_vec()))).unwrap();
            let items: Vec<Item> = items.map(Result::unwrap).collect();
            assert!(matches!(&items[..], [Item::Skipped(_)]), "{text}");
        }
    }
}
