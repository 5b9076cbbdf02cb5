//! Shadowserver reports: CSV read by header, driven by Shadowserver's own
//! published schemas (`schemas/`): which columns each report type has, and
//! how each maps to IntelMQ's harmonized fields. A newer copy of the
//! schemas can be loaded without a new kanki ([`Schemas::load`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::csv_records::{CsvRecords, Next};
use crate::{Event, EventsError, Item, Items, Notes, Skipped, parse_time};

const BUILTIN_INTELMQ: &str = include_str!("../schemas/shadowserver-intelmq.json");
const BUILTIN_REPORTS: &str = include_str!("../schemas/shadowserver-reports.json");

/// How a column's value is checked or converted on its way to a field
/// (the names of Shadowserver's IntelMQ mapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Convert {
    Keep,
    Timestamp,
    Ip,
    Int,
    Float,
    /// "0" means no value.
    NonZero,
    /// The CVE names in a tag list.
    CvesOfTag,
}

impl Convert {
    fn named(name: Option<&str>) -> Convert {
        match name {
            Some("add_UTC_to_timestamp") => Convert::Timestamp,
            Some("validate_ip") => Convert::Ip,
            Some("convert_int") => Convert::Int,
            Some("convert_float") => Convert::Float,
            Some("invalidate_zero") => Convert::NonZero,
            Some("extract_cve_from_tag") => Convert::CvesOfTag,
            // validate_to_none (an empty value is none, as for every
            // column here), dates, booleans, names: kept as written.
            _ => Convert::Keep,
        }
    }

    /// The value converted; borrowed where it is kept as written (an
    /// ingest converts every column of every row).
    fn apply(self, v: &str) -> Option<Cow<'_, str>> {
        match self {
            Convert::Keep | Convert::Timestamp => Some(Cow::Borrowed(v)),
            // An IPv4 address Rust reads is written as it would write it
            // (no leading zeros); IPv6 has several forms.
            Convert::Ip => match v.parse::<IpAddr>().ok()? {
                IpAddr::V4(_) => Some(Cow::Borrowed(v)),
                a => Some(Cow::Owned(a.to_string())),
            },
            Convert::Int => {
                let n = v.parse::<i64>().ok()?;
                let digits = v.strip_prefix('-').unwrap_or(v);
                let plain = !digits.starts_with(['+', '0']) || digits == "0" && v == "0";
                Some(match plain {
                    true => Cow::Borrowed(v),
                    false => Cow::Owned(n.to_string()),
                })
            }
            Convert::Float => v.parse::<f64>().ok().map(|_| Cow::Borrowed(v)),
            Convert::NonZero => (v != "0").then_some(Cow::Borrowed(v)),
            Convert::CvesOfTag => {
                let cves: Vec<&str> = v
                    .split([';', ','])
                    .map(str::trim)
                    // `get`: a tag may hold any character, and slicing
                    // inside one would panic (found by the fuzzer).
                    .filter(|t| {
                        t.len() > 4 && t.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("cve-"))
                    })
                    .collect();
                (!cves.is_empty()).then(|| Cow::Owned(cves.join(",").to_ascii_uppercase()))
            }
        }
    }
}

/// One column → field rule of a report.
#[derive(Clone, Debug)]
struct Rule {
    /// IntelMQ field; `extra.` alone means `extra.<column>`.
    target: String,
    column: String,
    convert: Convert,
    required: bool,
}

/// One report type's schema.
#[derive(Clone, Debug)]
pub struct ReportSchema {
    /// As in file names: `event4_sinkhole`, `scan_ntp`, ...
    pub file_name: String,
    /// `feed.name` of its events: "Sinkhole-Events IPv4", ...
    pub feed_name: String,
    columns: HashSet<String>,
    constants: Vec<(String, String)>,
    rules: Vec<Rule>,
}

/// Every report type Shadowserver publishes a schema for.
#[derive(Debug)]
pub struct Schemas {
    by_file_name: HashMap<String, Arc<ReportSchema>>,
    /// File names, longest first (for finding one in a file name).
    names: Vec<String>,
}

#[derive(Deserialize)]
struct RawMapping {
    #[serde(default)]
    constant_fields: HashMap<String, String>,
    feed_name: String,
    file_name: String,
    #[serde(default)]
    required_fields: Vec<Vec<serde_json::Value>>,
    #[serde(default)]
    optional_fields: Vec<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawReport {
    fields: Vec<String>,
}

impl Schemas {
    /// The schemas built into kanki.
    pub fn builtin() -> Arc<Schemas> {
        static S: OnceLock<Arc<Schemas>> = OnceLock::new();
        S.get_or_init(|| {
            Arc::new(
                Schemas::load(BUILTIN_INTELMQ, BUILTIN_REPORTS)
                    .expect("the built-in Shadowserver schemas parse"),
            )
        })
        .clone()
    }

    /// Reads Shadowserver's `intelmq.json` (the mapping) and
    /// `reports.json` (the columns of each report).
    pub fn load(intelmq_json: &str, reports_json: &str) -> Result<Schemas, String> {
        let mut mappings: HashMap<String, serde_json::Value> =
            serde_json::from_str(intelmq_json).map_err(|e| format!("intelmq.json: {e}"))?;
        mappings.remove("_meta");
        let reports: HashMap<String, RawReport> =
            serde_json::from_str(reports_json).map_err(|e| format!("reports.json: {e}"))?;
        let mut by_file_name = HashMap::new();
        for (key, v) in mappings {
            let m: RawMapping =
                serde_json::from_value(v).map_err(|e| format!("intelmq.json {key}: {e}"))?;
            // [field, column, conversion?, whole-row?]
            let rule = |f: &Vec<serde_json::Value>, required: bool| -> Option<Rule> {
                Some(Rule {
                    target: f.first()?.as_str()?.to_string(),
                    column: f.get(1)?.as_str()?.to_string(),
                    convert: Convert::named(f.get(2).and_then(|c| c.as_str())),
                    required,
                })
            };
            let rules: Vec<Rule> = m
                .required_fields
                .iter()
                .filter_map(|f| rule(f, true))
                .chain(m.optional_fields.iter().filter_map(|f| rule(f, false)))
                .collect();
            let columns = reports
                .get(&m.file_name)
                .map(|r| r.fields.iter().cloned().collect())
                .unwrap_or_default();
            let mut constants: Vec<(String, String)> = m.constant_fields.into_iter().collect();
            constants.sort();
            by_file_name.insert(
                m.file_name.clone(),
                Arc::new(ReportSchema {
                    file_name: m.file_name,
                    feed_name: m.feed_name,
                    columns,
                    constants,
                    rules,
                }),
            );
        }
        let mut names: Vec<String> = by_file_name.keys().cloned().collect();
        names.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Ok(Schemas {
            by_file_name,
            names,
        })
    }

    pub fn report(&self, file_name: &str) -> Option<Arc<ReportSchema>> {
        self.by_file_name.get(file_name).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_file_name.len()
    }

    /// The report types, as in file names, longest first.
    pub fn report_types(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_file_name.is_empty()
    }

    /// The report type named in a file name such as
    /// `2024-05-01-event4_sinkhole_http-asn-jp.csv`: the longest known type
    /// that stands between `-`, `.` or the ends of the name.
    pub fn type_in_file_name(&self, file_name: &str) -> Option<&str> {
        let base = file_name.rsplit('/').next().unwrap_or(file_name);
        let bounded = |i: usize, n: usize| {
            let before = base[..i].chars().next_back();
            let after = base[i + n..].chars().next();
            before.is_none_or(|c| c == '-' || c == '.')
                && after.is_none_or(|c| c == '-' || c == '.')
        };
        self.names.iter().map(String::as_str).find(|name| {
            base.match_indices(name)
                .any(|(i, _)| bounded(i, name.len()))
        })
    }
}

/// Reads a Shadowserver CSV report of type `schema`: the header first (its
/// unknown columns go to the notes), then one event per row. The
/// harmonized fields kanki does not type (`source.asn`,
/// `source.geolocation.cc`, `source.reverse_dns`, ...) are put in each
/// event's `extra`, where an ingest stores them. With `extras`, so are the
/// report's own columns (`extra.*`); without, those stay in the raw record
/// only (building a map of some thirty strings per row was most of the
/// parsing).
pub fn parse_shadowserver(
    schema: Arc<ReportSchema>,
    input: Box<dyn BufRead + Send>,
    extras: bool,
) -> Result<(Notes, Items), EventsError> {
    let mut records = CsvRecords::new(input);
    match records.next_record()? {
        Next::Record => {}
        Next::End => return Err(EventsError::Input("the report is empty: no header".into())),
        Next::TooLong => {
            return Err(EventsError::Input(format!(
                "the header is longer than {} bytes",
                crate::MAX_RECORD
            )));
        }
    }
    let header: Vec<String> = (0..records.fields())
        .map(|i| String::from_utf8_lossy(records.field(i)).trim().to_string())
        .collect();
    // Held once for all rows; a header of several lines (a quoted line
    // end) is copied into each row's record instead, so that the record's
    // first line is still the shared part.
    let header_raw = match records.raw() {
        h if h.contains(&b'\n') => Err(h.to_vec()),
        h => Ok(Arc::from(h)),
    };
    let mut by_column: Vec<Vec<Rule>> = vec![Vec::new(); header.len()];
    let mut unknown = Vec::new();
    for (i, col) in header.iter().enumerate() {
        let col = col.trim_start_matches('\u{feff}');
        by_column[i] = schema
            .rules
            .iter()
            .filter(|r| r.column == col)
            .cloned()
            .collect();
        if by_column[i].is_empty() && !schema.columns.contains(col) && !col.is_empty() {
            unknown.push(col.to_string());
            // Not dropped: kept under extra.
            by_column[i].push(Rule {
                target: "extra.".into(),
                column: col.to_string(),
                convert: Convert::Keep,
                required: false,
            });
        }
    }
    let required = |target: &str| -> Result<Option<usize>, EventsError> {
        let need = schema
            .rules
            .iter()
            .any(|r| r.required && r.target == target);
        let at = by_column
            .iter()
            .position(|rs| rs.iter().any(|r| r.target == target));
        if need && at.is_none() {
            return Err(EventsError::Input(format!(
                "the header has no column for {target} (report type {})",
                schema.file_name
            )));
        }
        Ok(at)
    };
    let time_col = required("time.source")?.ok_or_else(|| {
        EventsError::Input(format!("report type {} maps no time", schema.file_name))
    })?;
    let ip_col = required("source.ip")?.ok_or_else(|| {
        EventsError::Input(format!(
            "report type {} maps no source address",
            schema.file_name
        ))
    })?;
    let notes = Notes {
        report_type: Some(schema.file_name.clone()),
        unknown_columns: unknown,
    };
    let read = by_column
        .iter()
        .map(|rules| {
            rules
                .iter()
                .any(|r| extras || r.required || !is_extra(&r.target))
        })
        .collect();
    // Where the report names the family or tags the row, for a row whose
    // infection column is empty.
    let named = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let layout = Layout {
        schema,
        by_column,
        read,
        time_col,
        ip_col,
        family_col: named("family"),
        tag_col: named("tag"),
        header_raw,
        extras,
    };
    let mut line = 1u64;
    let iter = std::iter::from_fn(move || {
        loop {
            let next = match records.next_record() {
                Err(e) => return Some(Err(EventsError::Io(e))),
                Ok(n) => n,
            };
            line += 1;
            match next {
                Next::End => return None,
                Next::TooLong => {
                    return Some(Ok(Item::Skipped(Skipped {
                        line,
                        reason: crate::too_long(),
                    })));
                }
                Next::Record => {}
            }
            if records.fields() == 1 && records.field(0).is_empty() {
                continue; // a blank line
            }
            return Some(Ok(row(&layout, &records, line)));
        }
    });
    Ok((notes, Box::new(iter)))
}

/// What the header says of every row, and whether to fill `extra`.
struct Layout {
    schema: Arc<ReportSchema>,
    by_column: Vec<Vec<Rule>>,
    /// Per column: whether it is read (without `extras`, a column only
    /// `extra` fields come from is left in the raw record unread).
    read: Vec<bool>,
    time_col: usize,
    ip_col: usize,
    family_col: Option<usize>,
    tag_col: Option<usize>,
    /// The header line as read, shared by the rows' records (or, of
    /// several lines, copied into each).
    header_raw: Result<Arc<[u8]>, Vec<u8>>,
    extras: bool,
}

fn row(layout: &Layout, r: &CsvRecords, line: u64) -> Item {
    let Layout {
        schema,
        by_column,
        read,
        time_col,
        ip_col,
        family_col,
        tag_col,
        header_raw,
        extras,
    } = layout;
    let (time_col, ip_col, extras) = (*time_col, *ip_col, *extras);
    let skip = |reason: String| Item::Skipped(Skipped { line, reason });
    // A short row (fewer fields than the header) is read with its missing
    // trailing fields empty, as IntelMQ reads it, and remarked on.
    if r.fields() > by_column.len() {
        return skip(format!(
            "{} fields where the header has {}",
            r.fields(),
            by_column.len()
        ));
    }
    let text = |i: usize| match i < r.fields() {
        true => std::str::from_utf8(r.field(i)).map(str::trim),
        false => Ok(""),
    };
    let Ok(Some(time)) = text(time_col).map(parse_time) else {
        return skip("time.source is missing or not a time".into());
    };
    // An address, or a network (`198.51.100.0/24`): its first address
    // stands for it, and `source.network` says it is one.
    let (ip, network) = match text(ip_col).map(address_or_network) {
        Ok(Some(a)) => a,
        _ => return skip("source.ip is missing or not an address or network".into()),
    };
    let mut e = Event::new(ip, time, "", "", &schema.feed_name, "Shadowserver");
    if let Some(n) = network {
        e.extra.insert(NETWORK.into(), n);
    }
    if r.fields() < by_column.len() {
        e.remark = Some(SHORT_ROW);
    }
    for (k, v) in &schema.constants {
        set(&mut e, k, "", Cow::Borrowed(v), extras);
    }
    for (i, rules) in by_column.iter().enumerate().take(r.fields()) {
        if !read[i] || i == time_col || i == ip_col {
            continue;
        }
        let v = match text(i) {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => continue,
            Err(_) if !extras => continue,
            Err(_) => {
                e.extra.insert(
                    format!("extra.{}", rules[0].column),
                    String::from_utf8_lossy(r.field(i)).into_owned(),
                );
                continue;
            }
        };
        for rule in rules {
            match rule.convert.apply(v) {
                Some(v) => set(&mut e, &rule.target, &rule.column, v, extras),
                None if rule.required => {
                    return skip(format!("{} {v:?} is not valid", rule.target));
                }
                None => {}
            }
        }
    }
    // The infection column left empty: the family the report names, or
    // else its first tag, says what the machine is infected with.
    if e.malware.is_none() {
        let named = |col: Option<usize>| {
            col.and_then(|c| text(c).ok())
                .and_then(|v| v.split([',', ';']).map(str::trim).find(|t| !t.is_empty()))
                .map(|v| lower(Cow::Borrowed(v)))
        };
        e.malware = named(*family_col).or_else(|| named(*tag_col));
    }
    match header_raw {
        Ok(head) => {
            e.raw = r.raw().to_vec();
            e.raw_head = Some(head.clone());
        }
        Err(head) => e.raw = [&head[..], b"\n", r.raw()].concat(),
    }
    Item::Event(Box::new(e))
}

/// The field that marks an event whose source is a network, not one address.
pub const NETWORK: &str = "source.network";

/// The remark on a row with fewer fields than the header.
pub const SHORT_ROW: &str = "short row";

/// An address, or a network in CIDR notation (its first address, and the
/// network written out in its plain form).
fn address_or_network(v: &str) -> Option<(IpAddr, Option<String>)> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (addr, len) = v.split_once('/')?;
    let addr: IpAddr = addr.trim().parse().ok()?;
    let len: u8 = len.trim().parse().ok()?;
    let first = match addr {
        IpAddr::V4(a) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
        _ => return None,
    };
    Some((first, Some(format!("{first}/{len}"))))
}

/// Whether `target` is one of the report's own columns (`extra.*`) rather
/// than a harmonized field.
fn is_extra(target: &str) -> bool {
    target.starts_with("extra.")
}

/// Puts a mapped value in its field; with `extras` false, a report's own
/// column (`extra.*`) is left to the raw record.
fn set(e: &mut Event, target: &str, column: &str, v: Cow<'_, str>, extras: bool) {
    match target {
        "source.port" => e.source_port = v.parse().ok(),
        "destination.ip" => e.destination_ip = v.parse().ok(),
        "destination.port" => e.destination_port = v.parse().ok(),
        "classification.taxonomy" => e.taxonomy = v.into_owned(),
        "classification.type" => e.class = v.into_owned(),
        "classification.identifier" => e.identifier = Some(v.into_owned()),
        "malware.name" => e.malware = Some(lower(v)),
        "protocol.transport" => e.transport = Some(lower(v)),
        "protocol.application" => e.application = Some(lower(v)),
        _ if !extras && is_extra(target) => {}
        "extra." => {
            e.extra.insert(format!("extra.{column}"), v.into_owned());
        }
        _ => {
            e.extra.insert(target.to_string(), v.into_owned());
        }
    }
}

/// `v` in lower case; as it is when it is already (as reports mostly
/// write these fields), without going through it a character at a time.
fn lower(v: Cow<'_, str>) -> String {
    match v.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        true => v.to_lowercase(),
        false => v.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cves_are_taken_from_a_tag_list_whatever_characters_it_holds() {
        let cves = |v| Convert::CvesOfTag.apply(v).map(|c| c.into_owned());
        assert_eq!(
            cves("openresolver;cve-2020-1; CVE-2021-2,x").as_deref(),
            Some("CVE-2020-1,CVE-2021-2")
        );
        // A multi-byte character across the fourth byte (a fuzzer's find,
        // which panicked): no CVE, no panic.
        assert_eq!(cves("Uc\u{fffd}ics;ab\u{e9}cd"), None);
    }

    #[test]
    fn names_are_lowered_whatever_their_case() {
        for v in ["mirai", "Mirai", "TCP", "ÄRGER", ""] {
            assert_eq!(lower(Cow::Borrowed(v)), v.to_lowercase(), "{v}");
        }
    }

    #[test]
    fn numbers_and_addresses_convert_to_their_plain_form_borrowed_or_not() {
        for v in [
            "1",
            "0",
            "-5",
            "007",
            "+3",
            "-0",
            "-012",
            "40000",
            "9223372036854775807",
        ] {
            let want = v.parse::<i64>().unwrap().to_string();
            assert_eq!(Convert::Int.apply(v).as_deref(), Some(&*want), "{v}");
        }
        for v in [
            "0.0.0.0",
            "192.0.2.1",
            "2001:DB8::1",
            "2001:db8:0:0:0:0:0:1",
            "::ffff:192.0.2.1",
        ] {
            let want = v.parse::<IpAddr>().unwrap().to_string();
            assert_eq!(Convert::Ip.apply(v).as_deref(), Some(&*want), "{v}");
        }
        for v in ["", "x", "1.2.3", "01.2.3.4", "1e3", "--1"] {
            assert_eq!(Convert::Ip.apply(v), None, "{v}");
            if v != "1e3" {
                assert_eq!(Convert::Int.apply(v), None, "{v}");
            }
        }
    }

    fn parse(report: &str, csv: &str) -> (Notes, Vec<Item>) {
        let s = Schemas::builtin().report(report).unwrap();
        let (notes, items) = parse_shadowserver(
            s,
            Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())),
            true,
        )
        .unwrap();
        (notes, items.map(Result::unwrap).collect())
    }

    #[test]
    fn the_builtin_schemas_have_the_issue_report_types() {
        let s = Schemas::builtin();
        for t in [
            "event4_sinkhole",
            "event4_sinkhole_http",
            "event4_honeypot_brute_force",
            "scan_dns",
            "scan_ntp",
            "scan_ntpmonitor",
            "device_id",
        ] {
            assert!(s.report(t).is_some(), "{t}");
        }
        assert_eq!(
            s.type_in_file_name("2024-05-01-event4_sinkhole_http-asn-jp.csv"),
            Some("event4_sinkhole_http")
        );
        assert_eq!(
            s.type_in_file_name("/x/2024-05-01-scan_ntp-asn.csv"),
            Some("scan_ntp")
        );
        assert_eq!(s.type_in_file_name("notes.csv"), None);
    }

    #[test]
    fn a_sinkhole_row_maps_to_harmonized_fields() {
        let csv = "\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"infection\",\"dst_ip\",\"dst_port\",\"src_asn\",\"family\",\"brand_new\"\n\
                   \"2024-05-01 10:00:00\",\"tcp\",\"192.0.2.7\",\"51234\",\"Mirai\",\"198.51.100.1\",\"80\",\"64500\",\"mirai\",\"x\"\n\
                   \"not a time\",\"tcp\",\"192.0.2.7\",\"1\",\"a\",\"\",\"\",\"\",\"\",\"\"\n";
        let (notes, items) = parse("event4_sinkhole", csv);
        assert_eq!(notes.unknown_columns, vec!["brand_new".to_string()]);
        let Item::Event(e) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(e.source_ip.to_string(), "192.0.2.7");
        assert_eq!(e.source_port, Some(51234));
        assert_eq!(e.destination_port, Some(80));
        assert_eq!(e.class, "infected-system");
        assert_eq!(e.taxonomy, "malicious-code");
        assert_eq!(e.malware.as_deref(), Some("mirai"));
        assert_eq!(e.identifier.as_deref(), Some("Mirai"));
        assert_eq!(e.extra["source.asn"], "64500");
        assert_eq!(e.extra["extra.brand_new"], "x");
        assert_eq!(e.feed_provider, "Shadowserver");
        assert!(String::from_utf8_lossy(&e.raw).ends_with("\"mirai\",\"x\""));
        let Item::Skipped(s) = &items[1] else {
            panic!()
        };
        assert_eq!(s.line, 3);
        assert!(s.reason.contains("time"), "{}", s.reason);
    }

    #[test]
    fn an_ingest_keeps_the_harmonized_fields_and_leaves_the_columns_to_the_raw_record() {
        let csv = "\"timestamp\",\"src_ip\",\"src_port\",\"infection\",\"src_asn\",\"src_geo\",\"src_hostname\",\"src_naics\",\"public_source\"\n\
                   \"2024-05-01 10:00:00\",\"192.0.2.7\",\"51234\",\"mirai\",\"64500\",\"JP\",\"host7.example.jp\",\"517311\",\"CERT\"\n";
        let s = Schemas::builtin().report("event4_sinkhole").unwrap();
        let (_, mut items) = parse_shadowserver(
            s,
            Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())),
            false,
        )
        .unwrap();
        let Some(Ok(Item::Event(e))) = items.next() else {
            panic!("no event")
        };
        let fields: Vec<(&str, &str)> = e.harmonized_extra().collect();
        assert_eq!(
            fields,
            [
                ("source.asn", "64500"),
                ("source.geolocation.cc", "JP"),
                ("source.reverse_dns", "host7.example.jp"),
            ]
        );
        assert!(!e.extra.contains_key("extra.source.naics"), "{:?}", e.extra);
        assert!(
            !e.extra.contains_key("extra.public_source"),
            "{:?}",
            e.extra
        );
    }

    #[test]
    fn a_missing_required_column_refuses_the_file() {
        let s = Schemas::builtin().report("scan_ntp").unwrap();
        let r = parse_shadowserver(
            s,
            Box::new(std::io::Cursor::new(
                b"timestamp,port\n2024-01-01 00:00:00,123\n".to_vec(),
            )),
            true,
        );
        assert!(matches!(r, Err(EventsError::Input(m)) if m.contains("source.ip")));
    }

    #[test]
    fn short_rows_networks_and_a_family_without_an_infection_are_read() {
        let csv = "\"timestamp\",\"src_ip\",\"src_port\",\"infection\",\"family\",\"tag\",\"src_asn\"\n\
                   \"2024-05-01 10:00:00\",\"192.0.2.7\",\"51234\",\"\",\"Mirai\",\"botnet\",\"64500\"\n\
                   \"2024-05-01 10:00:01\",\"198.51.100.77/24\",\"1\",\"\",\"\",\"qakbot;x\",\"64501\"\n\
                   \"2024-05-01 10:00:02\",\"192.0.2.9\"\n\
                   \"2024-05-01 10:00:03\",\"192.0.2.9\",\"1\",\"\",\"\",\"\",\"1\",\"one too many\"\n";
        let (_, items) = parse("event4_sinkhole", csv);
        let events: Vec<&Event> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => Some(&**e),
                Item::Skipped(_) => None,
            })
            .collect();
        assert_eq!(events.len(), 3, "{items:?}");
        // The family names the malware when the infection column is empty.
        assert_eq!(events[0].malware.as_deref(), Some("mirai"));
        assert_eq!(events[0].remark, None);
        // A network is its first address, and says it is a network; the
        // first tag names the malware when the family is empty too.
        assert_eq!(events[1].source_ip.to_string(), "198.51.100.0");
        assert_eq!(events[1].extra[NETWORK], "198.51.100.0/24");
        assert_eq!(events[1].malware.as_deref(), Some("qakbot"));
        // A short row: the missing fields are empty, and it is remarked on.
        assert_eq!(events[2].source_ip.to_string(), "192.0.2.9");
        assert_eq!(events[2].source_port, None);
        assert_eq!(events[2].remark, Some(SHORT_ROW));
        // A row longer than the header is still refused.
        let Item::Skipped(s) = &items[3] else {
            panic!("{:?}", items[3])
        };
        assert!(s.reason.contains("8 fields"), "{}", s.reason);
    }

    #[test]
    fn a_record_longer_than_the_bound_is_skipped_and_the_next_read() {
        let mut csv = b"\"timestamp\",\"src_ip\"\n\"2024-05-01 10:00:00\",\"".to_vec();
        csv.extend(std::iter::repeat_n(b'x', crate::MAX_RECORD + 1));
        csv.extend(b"\"\n\"2024-05-01 10:00:01\",\"192.0.2.8\"\n");
        let s = Schemas::builtin().report("event4_sinkhole").unwrap();
        let (_, items) = parse_shadowserver(s, Box::new(std::io::Cursor::new(csv)), false).unwrap();
        let items: Vec<Item> = items.map(Result::unwrap).collect();
        assert!(
            matches!(&items[0], Item::Skipped(s) if s.line == 2 && s.reason.contains("longer than")),
            "{:?}",
            items[0]
        );
        assert!(matches!(&items[1], Item::Event(e) if e.source_ip.to_string() == "192.0.2.8"));
    }
}
