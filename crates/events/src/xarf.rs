//! X-ARF v4 abuse reports, alone or inside an abuse mail, in the forms
//! published: X-ARF 4.0.0 of the specification's repository
//! (xarf/xarf-spec: flat, `"xarf_version": "4.0.0"`, `source_identifier`,
//! `category` or `class`, `type`, per-type fields), the JSON-schema form of
//! abusix/xarf (`{"ReporterInfo", "Report": {"SourceIp", "MalwareName"}}`,
//! no `Version`), and the older drafts (`{"Version": "4", "Report":
//! {"Source", ...}}`). A mail is taken apart by `mailparse` (MIME parts, base64 and
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

/// RSIT taxonomy and type of an X-ARF report type: the older drafts'
/// `ReportType` (`Malware`, `LoginAttack`, ...) and 4.0.0's `type`
/// (`infected_host`, `login_attack`, ...), compared without case, `_`
/// or `-`. A 4.0.0 `bot` is a crawler, not a bot of a botnet: that is
/// [`class_of_4_0_0`]'s business.
fn class_of(report_type: &str) -> (&'static str, &'static str) {
    let t: String = report_type
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    match t.as_str() {
        "malware" | "botnet" | "bot" | "c&c" | "cnc" | "infectedhost" => {
            ("malicious-code", "infected-system")
        }
        "loginattack" | "bruteforce" | "authfailure" => ("intrusion-attempts", "brute-force"),
        "portscan" | "scanning" | "scan" | "reconnaissance" | "vulnscanning"
        | "vulnerabilityscan" => ("information-gathering", "scanner"),
        "spam" => ("abusive-content", "spam"),
        "ddos" | "dos" | "ddosamplification" => ("availability", "ddos"),
        "phishing" => ("fraud", "phishing"),
        "vulnerable" | "opendns" | "openresolver" => ("vulnerable", "vulnerable-system"),
        _ => ("other", "other"),
    }
}

/// [`class_of`] for X-ARF 4.0.0's `type`, where `bot` (in the
/// `connection` category) is a crawler seen at work (GPTBot and its
/// kind), not a machine in a botnet, and `scraping` is the same.
fn class_of_4_0_0(report_type: &str) -> (&'static str, &'static str) {
    if report_type.eq_ignore_ascii_case("bot") || report_type.eq_ignore_ascii_case("scraping") {
        return ("other", "other");
    }
    class_of(report_type)
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
            reason: "no X-ARF report (a JSON object with an xarf_version or a Report) in the input"
                .into(),
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
            Some(Ok(v)) if v.get("Report").is_some() || v.get("xarf_version").is_some() => {
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
    let read = if v.get("xarf_version").is_some() {
        report_4_0_0(v)
    } else {
        report_draft(v)
    };
    match read {
        Ok(mut e) => {
            e.raw = raw;
            Item::Event(Box::new(e))
        }
        Err(reason) => Item::Skipped(Skipped { line, reason }),
    }
}

/// A port given as a number or as text.
fn port(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A malware name from a tag such as `malware:zeus` (4.0.0's tags).
fn malware_tag(tags: Option<&Value>) -> Option<String> {
    tags?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| {
            let (k, v) = t.split_once(':')?;
            (k.trim().eq_ignore_ascii_case("malware") && !v.trim().is_empty())
                .then(|| v.trim().to_lowercase())
        })
}

/// X-ARF 4.0.0, as the specification's repository publishes it: flat,
/// `xarf_version`, `source_identifier`, `category` (`class` in earlier
/// 4.0.0 samples), `type`, per-type fields such as `malware_family`.
fn report_4_0_0(v: &Value) -> Result<Event, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::trim);
    let version = match &v["xarf_version"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !version.starts_with('4') {
        return Err(format!("X-ARF version {version:?}: only version 4 is read"));
    }
    let source = s("source_identifier").unwrap_or("");
    let Ok(ip) = source.parse() else {
        return Err(format!(
            "source_identifier {source:?} is not an address: only reports on an address name a subscriber"
        ));
    };
    let Some(t) = ["last_seen", "first_seen", "timestamp"]
        .iter()
        .find_map(|k| s(k).and_then(parse_time))
    else {
        return Err("no time (last_seen, first_seen or timestamp)".into());
    };
    let category = s("category").or_else(|| s("class")).unwrap_or("");
    let report_type = s("type").unwrap_or("");
    let (taxonomy, class) = class_of_4_0_0(report_type);
    let reporter = v["reporter"]
        .get("org")
        .and_then(Value::as_str)
        .unwrap_or("unknown reporter");
    let mut e = Event::new(ip, t, taxonomy, class, "X-ARF", reporter);
    e.source_port = port(v.get("source_port"));
    e.destination_ip = s("destination_ip").and_then(|a| a.parse().ok());
    e.destination_port = port(v.get("destination_port"));
    e.identifier = Some(report_type.to_ascii_lowercase()).filter(|x| !x.is_empty());
    e.malware = s("malware_family")
        .map(str::to_lowercase)
        .or_else(|| malware_tag(v.get("tags")))
        .filter(|m| !m.is_empty());
    e.transport = s("protocol").map(str::to_lowercase);
    e.application = s("service").map(str::to_lowercase);
    for (field, key) in [
        ("extra.xarf_version", "xarf_version"),
        ("extra.report_id", "report_id"),
    ] {
        if let Some(x) = s(key).filter(|x| !x.is_empty()) {
            e.extra.insert(field.into(), x.to_string());
        }
    }
    if !category.is_empty() {
        e.extra
            .insert("extra.category".into(), category.to_string());
    }
    if let Some(m) = v["reporter"].get("contact").and_then(Value::as_str) {
        e.extra.insert("extra.reporter_email".into(), m.to_string());
    }
    Ok(e)
}

/// The older X-ARF v4 drafts: `{"Version": "4", "ReporterInfo", "Report":
/// {"Source", ...}}`, and the JSON-schema form of the abusix/xarf
/// repository, which has no `Version` and names the address `SourceIp`
/// and the malware `MalwareName` or `BotnetName`.
fn report_draft(v: &Value) -> Result<Event, String> {
    let version = match &v["Version"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => "4".into(),
        _ => String::new(),
    };
    if !version.starts_with('4') {
        return Err(format!("X-ARF version {version:?}: only version 4 is read"));
    }
    let r = &v["Report"];
    let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::trim);
    let source_type = s("SourceType").unwrap_or("ip-address");
    if !source_type.eq_ignore_ascii_case("ip-address") && !source_type.eq_ignore_ascii_case("ip") {
        return Err(format!(
            "SourceType {source_type:?}: only ip-address reports name a subscriber"
        ));
    }
    let Some(ip) = s("SourceIp")
        .or_else(|| s("Source"))
        .and_then(|a| a.parse().ok())
    else {
        return Err("Report.SourceIp (or Report.Source) is missing or not an address".into());
    };
    let Some(t) = s("Date").and_then(parse_time) else {
        return Err("Report.Date is missing or not a time".into());
    };
    let report_type = s("ReportType").unwrap_or("");
    let (taxonomy, class) = class_of(report_type);
    let reporter = v["ReporterInfo"]
        .get("ReporterOrg")
        .and_then(Value::as_str)
        .unwrap_or("unknown reporter");
    let mut e = Event::new(ip, t, taxonomy, class, "X-ARF", reporter);
    e.source_port = port(r.get("SourcePort"));
    e.destination_ip = s("DestinationIp").and_then(|a| a.parse().ok());
    e.destination_port = port(r.get("DestinationPort")).or_else(|| port(r.get("Port")));
    e.identifier = Some(report_type.to_ascii_lowercase()).filter(|x| !x.is_empty());
    e.malware = ["MalwareFamily", "MalwareName", "BotnetName", "Family"]
        .iter()
        .find_map(|k| s(k).filter(|m| !m.is_empty()))
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
    Ok(e)
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

    /// Modelled on xarf/xarf-spec `samples/v4/connection-infected-host.json`
    /// (X-ARF 4.0.0, shortened; addresses from the documentation ranges).
    const SPEC_4_0_0_INFECTED: &str = r#"{
	"xarf_version": "4.0.0",
	"report_id": "h8i9j0k1-l2m3-4567-hi89-01234gh56789",
	"timestamp": "2025-01-11T13:42:15Z",
	"reporter": {"org": "Malware Detection Service", "contact": "infections@malware-detect.example"},
	"source_identifier": "203.0.113.85",
	"source_port": 443,
	"category": "connection",
	"type": "infected_host",
	"destination_ip": "198.51.100.150",
	"destination_port": 8080,
	"protocol": "tcp",
	"malware_family": "Zeus",
	"first_seen": "2025-01-10T08:00:00Z",
	"last_seen": "2025-01-11T13:40:00Z",
	"evidence": [{"content_type": "text/plain", "payload": "SW5mZWN0ZWQ="}],
	"tags": ["malware:zeus", "c2:active"]
}"#;

    /// Modelled on xarf/xarf-spec `samples/v4/connection/login_attack_sample.json`:
    /// an earlier 4.0.0 sample with `class` where later ones have `category`,
    /// and no time but the report's.
    const SPEC_4_0_0_LOGIN: &str = r#"{"xarf_version": "4.0.0", "report_id": "u1v2", "timestamp": "2024-01-15T06:30:45Z",
  "reporter": {"org": "SSH Honeypot Network", "contact": "honeypot@sshsecurity.example", "type": "automated"},
  "source_identifier": "198.51.100.77", "source_port": 45621, "class": "connection", "type": "login_attack",
  "destination_ip": "203.0.113.22", "destination_port": 22, "protocol": "tcp", "service": "ssh",
  "tags": ["attack:brute_force"]}"#;

    /// Modelled on abusix/xarf `samples/botnet_sample.json` and
    /// `samples/malware_sample.json` (the JSON-schema form: no `Version`).
    const ABUSIX_BOTNET: &str = r#"{"ReporterInfo": {"ReporterOrg": "ExampleOrg", "ReporterOrgEmail": "reports@example.com"},
  "Disclosure": true,
  "Report": {"ReportClass": "Content", "ReportType": "Botnet", "Date": "2018-02-05T14:17:10Z",
    "SourceIp": "192.0.2.55", "SourcePort": 54321, "BotnetName": "Mariposa", "Ongoing": true}}"#;
    const ABUSIX_MALWARE: &str = r#"{"ReporterInfo": {"ReporterOrg": "ExampleOrg"}, "Disclosure": true,
  "Report": {"ReportClass": "Content", "ReportType": "Malware", "Date": "2018-02-05T14:17:10Z",
    "SourceIp": "192.0.2.56", "SourcePort": 54321, "SourceUrl": "http://example.org/hosted_malware.exe",
    "MalwareName": "conficker"}}"#;

    #[test]
    fn x_arf_4_0_0_of_the_specification_is_read() {
        let e = events(SPEC_4_0_0_INFECTED);
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!(e.source_ip.to_string(), "203.0.113.85");
        assert_eq!(e.source_port, Some(443));
        assert_eq!(e.class, "infected-system");
        assert_eq!(e.taxonomy, "malicious-code");
        assert_eq!(e.malware.as_deref(), Some("zeus"));
        assert_eq!(e.destination_port, Some(8080));
        assert_eq!(e.transport.as_deref(), Some("tcp"));
        assert_eq!(e.feed_provider, "Malware Detection Service");
        assert_eq!(e.time_source.to_rfc3339(), "2025-01-11T13:40:00+00:00");
        assert_eq!(e.extra["extra.category"], "connection");

        let e = events(SPEC_4_0_0_LOGIN);
        assert_eq!(e.len(), 1, "the older `class` key");
        assert_eq!(e[0].class, "brute-force");
        assert_eq!(e[0].application.as_deref(), Some("ssh"));
        assert_eq!(e[0].time_source.to_rfc3339(), "2024-01-15T06:30:45+00:00");

        // The family only in a tag still names the malware.
        let tagged = SPEC_4_0_0_INFECTED.replace("\"malware_family\": \"Zeus\",", "");
        assert_eq!(events(&tagged)[0].malware.as_deref(), Some("zeus"));
        // A crawler (`bot`) is not an infected machine.
        let crawler = SPEC_4_0_0_INFECTED.replace("infected_host", "bot");
        assert_eq!(events(&crawler)[0].class, "other");
        // A report on a domain names no subscriber, and says so.
        let domain = SPEC_4_0_0_INFECTED.replace("203.0.113.85", "evil.example");
        let (_, items) = parse_xarf(Box::new(std::io::Cursor::new(domain.into_bytes()))).unwrap();
        let items: Vec<Item> = items.map(Result::unwrap).collect();
        assert!(
            matches!(&items[..], [Item::Skipped(s)] if s.reason.contains("source_identifier")),
            "{items:?}"
        );
    }

    #[test]
    fn the_abusix_json_schema_form_is_read() {
        let e = events(ABUSIX_BOTNET);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].source_ip.to_string(), "192.0.2.55");
        assert_eq!(e[0].class, "infected-system");
        assert_eq!(e[0].malware.as_deref(), Some("mariposa"));
        assert_eq!(e[0].feed_provider, "ExampleOrg");
        let e = events(ABUSIX_MALWARE);
        assert_eq!(e[0].source_ip.to_string(), "192.0.2.56");
        assert_eq!(e[0].malware.as_deref(), Some("conficker"));
        // Both in one mail, one after the other.
        let both = mail(
            "Content-Type: application/json",
            &format!("{ABUSIX_BOTNET}\n{SPEC_4_0_0_INFECTED}"),
        );
        assert_eq!(events(&both).len(), 2);
    }
}
