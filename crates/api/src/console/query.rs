//! The console's query strings, parsed and checked: a value out of range
//! (a page size of a million, a sort that does not exist, an age in the
//! future) gets a clear message on the page, never an error page or a
//! silent default. Bounded whatever the input: at most [`MAX_QUERY`] bytes
//! and [`MAX_PAIRS`] parameters are read.

use chrono::{DateTime, Duration, Utc};
use kanki_audit::Ground;
use kanki_html::Lang;
use kanki_indicators::{Category, Kind, Status, Tlp};
use kanki_store::{AuditFilter, CaseFilter, CaseState, ListQuery, Severity};

/// The longest query string read, in bytes.
pub const MAX_QUERY: usize = 4096;
/// The most parameters read.
pub const MAX_PAIRS: usize = 32;
/// The longest text value (a threat name), in characters.
pub const MAX_TEXT: usize = 200;

/// What is wrong with one parameter, in both languages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub en: String,
    pub ja: String,
}

impl Problem {
    fn new(en: String, ja: String) -> Problem {
        Problem { en, ja }
    }

    pub fn text(&self, l: Lang) -> &str {
        match l {
            Lang::En => &self.en,
            Lang::Ja => &self.ja,
        }
    }
}

/// The decoded parameters of a query string, in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Result<Params, Problem> {
        if raw.len() > MAX_QUERY {
            return Err(Problem::new(
                format!("The address's query is longer than {MAX_QUERY} bytes."),
                format!("アドレスのクエリが {MAX_QUERY} バイトを超えています。"),
            ));
        }
        let mut pairs = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            if pairs.len() == MAX_PAIRS {
                return Err(Problem::new(
                    format!("More than {MAX_PAIRS} parameters."),
                    format!("パラメータが {MAX_PAIRS} 個を超えています。"),
                ));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(pairs))
    }

    /// Decodes a raw query string, with a problem for each parameter not
    /// in `known` (the page's).
    fn known(raw: &str, known: &[&str]) -> Result<(Params, Vec<Problem>), Vec<Problem>> {
        let p = Params::parse(raw).map_err(|e| vec![e])?;
        let problems = p
            .unknown(known)
            .into_iter()
            .map(|name| unknown(name, known))
            .collect();
        Ok((p, problems))
    }

    /// Every non-empty value of `name` (`state=new&state=notified`, or
    /// `state=new,notified`).
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The one value of `name`, if given and not empty.
    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    /// Names not in `known`.
    fn unknown(&self, known: &[&str]) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !known.contains(k))
            .collect();
        out.dedup();
        out
    }
}

/// A whole number of `name` within `range`.
fn number(
    p: &Params,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    problems: &mut Vec<Problem>,
) -> Option<i64> {
    let v = p.one(name)?;
    match v.parse::<i64>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            problems.push(Problem::new(
                format!(
                    "{name} must be a whole number from {} to {}, not {:?}.",
                    range.start(),
                    range.end(),
                    shown(v)
                ),
                format!(
                    "{name} は {} から {} までの整数で指定してください（{:?} は範囲外です）。",
                    range.start(),
                    range.end(),
                    shown(v)
                ),
            ));
            None
        }
    }
}

/// A value as quoted back in a message: at most 40 characters.
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(40).collect();
    if v.chars().count() > 40 {
        s.push('…');
    }
    s
}

/// An age such as `24h` or `7d`: at most ten years.
fn age(v: &str) -> Option<Duration> {
    // By suffix, not by byte: the last character of a query value may be
    // several bytes long (`age=7イ`).
    let (n, hours_each) = if let Some(n) = v.strip_suffix('h') {
        (n, 1)
    } else {
        (v.strip_suffix('d')?, 24)
    };
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let hours = n.checked_mul(hours_each)?;
    (hours <= 24 * 3650).then(|| Duration::hours(hours))
}

/// The case queue's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CaseSort {
    /// The newest case first (the default).
    #[default]
    Newest,
    Oldest,
    /// The most recently seen first (by the latest event).
    Seen,
}

impl CaseSort {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseSort::Newest => "newest",
            CaseSort::Oldest => "oldest",
            CaseSort::Seen => "seen",
        }
    }
}

/// The case queue's query: filters, order and page, all checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseQuery {
    pub states: Vec<CaseState>,
    pub severity: Option<Severity>,
    pub threat: Option<String>,
    /// Cases with events of this feed (`feed.name`).
    pub feed: Option<String>,
    /// `24h`, `7d`: cases opened within it.
    pub age: Option<String>,
    pub sort: CaseSort,
    /// The page after the case with this id (in the queue's order).
    pub after: Option<i64>,
    /// By last seen: the page after this position (`SEEN.ID`: the last
    /// case's last seen, Unix seconds, and its id).
    pub seen_after: Option<(i64, i64)>,
    pub size: u32,
}

/// Cases on a page unless `size=` says otherwise.
pub const DEFAULT_PAGE: u32 = 50;
/// The most cases on a page.
pub const MAX_PAGE: u32 = 200;

impl CaseQuery {
    const KNOWN: &[&str] = &[
        "state", "severity", "threat", "feed", "age", "sort", "after", "size",
    ];

    /// Parses the queue's query string; every problem found, not only the
    /// first, so one message names them all.
    pub fn parse(raw: &str) -> Result<CaseQuery, Vec<Problem>> {
        let (p, mut problems) = Params::known(raw, Self::KNOWN)?;
        let mut q = CaseQuery {
            size: DEFAULT_PAGE,
            ..CaseQuery::default()
        };
        for s in p.all("state") {
            match s.parse::<CaseState>() {
                Ok(s) if !q.states.contains(&s) => q.states.push(s),
                Ok(_) => {}
                Err(_) => problems.push(one_of(
                    "state",
                    s,
                    CaseState::ALL.iter().map(|s| s.as_str()),
                )),
            }
        }
        if let Some(s) = p.one("severity") {
            match s.parse::<Severity>() {
                Ok(s) => q.severity = Some(s),
                Err(_) => problems.push(one_of(
                    "severity",
                    s,
                    Severity::ALL.iter().map(|s| s.as_str()),
                )),
            }
        }
        q.threat = text(&p, "threat", &mut problems);
        q.feed = text(&p, "feed", &mut problems);
        if let Some(a) = p.one("age") {
            if age(a).is_some() {
                q.age = Some(a.to_string());
            } else {
                problems.push(Problem::new(
                    format!(
                        "age must be hours or days such as 24h or 7d, at most 3650d, not {:?}.",
                        shown(a)
                    ),
                    format!(
                        "age は 24h や 7d のように時間か日数で、3650d までで指定してください（{:?} は使えません）。",
                        shown(a)
                    ),
                ));
            }
        }
        if let Some(s) = p.one("sort") {
            match s {
                "newest" => q.sort = CaseSort::Newest,
                "oldest" => q.sort = CaseSort::Oldest,
                "seen" => q.sort = CaseSort::Seen,
                other => problems.push(one_of(
                    "sort",
                    other,
                    ["newest", "oldest", "seen"].into_iter(),
                )),
            }
        }
        match (q.sort, p.one("after")) {
            (CaseSort::Seen, Some(a)) => match crate::directory::binding_position(a)
                .filter(|&(seen, id)| id > 0 && DateTime::from_timestamp(seen, 0).is_some())
            {
                Some(at) => q.seen_after = Some(at),
                None => problems.push(Problem::new(
                    format!(
                        "after must be a case's position such as 1764547200.42 when sorting by last seen, not {:?}.",
                        shown(a)
                    ),
                    format!(
                        "最終観測順では after は 1764547200.42 のような事案の位置で指定してください（{:?} は使えません）。",
                        shown(a)
                    ),
                )),
            },
            _ => q.after = number(&p, "after", 1..=i64::MAX, &mut problems),
        }
        if let Some(n) = number(&p, "size", 1..=i64::from(MAX_PAGE), &mut problems) {
            q.size = n as u32;
        }
        found(q, problems)
    }

    /// The store's filter for this query at `now`, one case more than the
    /// page (to know whether a next page exists).
    pub fn filter(&self, now: DateTime<Utc>) -> CaseFilter {
        let newest_first = self.sort == CaseSort::Newest;
        CaseFilter {
            states: self.states.clone(),
            threat: self.threat.clone(),
            feed: self.feed.clone(),
            severity: self.severity,
            opened_since: self.age.as_deref().and_then(age).map(|d| now - d),
            after: if newest_first { None } else { self.after },
            before: if newest_first { self.after } else { None },
            newest_first,
            by_last_seen: self.sort == CaseSort::Seen,
            seen_before: self
                .seen_after
                .and_then(|(seen, id)| Some((DateTime::from_timestamp(seen, 0)?, id))),
            limit: Some(self.size + 1),
            ..CaseFilter::default()
        }
    }

    /// The query string of the page after `last` (the filters and order
    /// kept), escaped for a URL.
    pub fn after_case(&self, last: &kanki_store::Case) -> String {
        match self.sort {
            CaseSort::Seen => {
                self.with_cursor(Some(seen_cursor(last.last_seen.timestamp(), last.id)))
            }
            _ => self.with_after(Some(last.id)),
        }
    }

    /// This query's own query string, its cursor included: what reading it
    /// again gives back.
    pub fn link(&self) -> String {
        self.with_cursor(match self.seen_after {
            Some((seen, id)) => Some(seen_cursor(seen, id)),
            None => self.after.map(|a| a.to_string()),
        })
    }

    /// The query string of this query with another `after` (the filters
    /// and order kept), escaped for a URL.
    pub fn with_after(&self, after: Option<i64>) -> String {
        self.with_cursor(after.map(|a| a.to_string()))
    }

    fn with_cursor(&self, after: Option<String>) -> String {
        let states: Vec<&str> = self.states.iter().map(|s| s.as_str()).collect();
        let states = states.join(",");
        page_link(
            &[
                ("state", Some(states.as_str()).filter(|s| !s.is_empty())),
                ("severity", self.severity.map(|s| s.as_str())),
                ("threat", self.threat.as_deref()),
                ("feed", self.feed.as_deref()),
                ("age", self.age.as_deref()),
                ("sort", Some(self.sort.as_str())),
            ],
            self.size,
            ("after", after),
        )
    }
}

/// The indicator search's query: what the store can filter by, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndicatorQuery {
    /// Part of the name or URL.
    pub q: Option<String>,
    pub source: Option<String>,
    pub category: Option<Category>,
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    pub tlp: Option<Tlp>,
    /// First seen from this moment (a date is its midnight, UTC).
    pub since: Option<DateTime<Utc>>,
    /// First seen before this moment (a date is the end of that day, UTC).
    pub until: Option<DateTime<Utc>>,
    pub after: Option<i64>,
    pub size: u32,
}

impl IndicatorQuery {
    const KNOWN: &[&str] = &[
        "q", "source", "category", "status", "kind", "tlp", "since", "until", "after", "size",
    ];

    pub fn parse(raw: &str) -> Result<IndicatorQuery, Vec<Problem>> {
        let (p, mut problems) = Params::known(raw, Self::KNOWN)?;
        let mut q = IndicatorQuery {
            size: DEFAULT_PAGE,
            ..IndicatorQuery::default()
        };
        q.q = text(&p, "q", &mut problems);
        q.source = text(&p, "source", &mut problems);
        q.category = vocabulary(
            &p,
            "category",
            Category::ALL.iter().map(|c| c.as_str()),
            &mut problems,
        );
        q.status = vocabulary(
            &p,
            "status",
            Status::ALL.iter().map(|c| c.as_str()),
            &mut problems,
        );
        q.kind = vocabulary(
            &p,
            "kind",
            Kind::ALL.iter().map(|c| c.as_str()),
            &mut problems,
        );
        q.tlp = vocabulary(
            &p,
            "tlp",
            Tlp::ALL.iter().map(|c| c.as_str()),
            &mut problems,
        );
        (q.since, q.until) = time_range(&p, &mut problems);
        q.after = number(&p, "after", 1..=i64::MAX, &mut problems);
        if let Some(n) = number(&p, "size", 1..=i64::from(MAX_PAGE), &mut problems) {
            q.size = n as u32;
        }
        found(q, problems)
    }

    /// The store's query.
    pub fn list(&self) -> ListQuery {
        ListQuery {
            kind: self.kind,
            category: self.category,
            status: self.status,
            source: self.source.clone(),
            q: self.q.clone(),
            tlp: self.tlp,
            first_seen_since: self.since,
            first_seen_until: self.until,
            after: self.after,
            limit: Some(self.size),
            ..ListQuery::default()
        }
    }

    /// This query's string with another `after`.
    pub fn with_after(&self, after: Option<i64>) -> String {
        let since = self.since.map(|t| t.to_rfc3339());
        let until = self.until.map(|t| t.to_rfc3339());
        page_link(
            &[
                ("q", self.q.as_deref()),
                ("source", self.source.as_deref()),
                ("category", self.category.map(|c| c.as_str())),
                ("status", self.status.map(|c| c.as_str())),
                ("kind", self.kind.map(|c| c.as_str())),
                ("tlp", self.tlp.map(|c| c.as_str())),
                ("since", since.as_deref()),
                ("until", until.as_deref()),
            ],
            self.size,
            ("after", after),
        )
    }
}

/// The audit search's query: the records' actor, action, ground, a text
/// they mention (a subscriber id, an address) and a time range, newest
/// first, at most `size` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub ground: Option<Ground>,
    pub mentions: Option<String>,
    /// A text the records' purpose contains.
    pub purpose: Option<String>,
    /// From this moment (a date is its midnight, UTC).
    pub since: Option<DateTime<Utc>>,
    /// Before this moment (a date is the end of that day, UTC).
    pub until: Option<DateTime<Utc>>,
    /// Records before this one (by number): the next page.
    pub before: Option<i64>,
    pub size: u32,
}

impl AuditQuery {
    const KNOWN: &[&str] = &[
        "actor", "action", "ground", "mentions", "purpose", "since", "until", "before", "size",
    ];

    pub fn parse(raw: &str) -> Result<AuditQuery, Vec<Problem>> {
        let (p, mut problems) = Params::known(raw, Self::KNOWN)?;
        let mut q = AuditQuery {
            size: DEFAULT_PAGE,
            ..AuditQuery::default()
        };
        q.actor = text(&p, "actor", &mut problems);
        q.action = text(&p, "action", &mut problems);
        q.ground = vocabulary(
            &p,
            "ground",
            Ground::ALL.iter().map(|g| g.as_str()),
            &mut problems,
        );
        q.mentions = text(&p, "mentions", &mut problems);
        q.purpose = text(&p, "purpose", &mut problems);
        (q.since, q.until) = time_range(&p, &mut problems);
        q.before = number(&p, "before", 1..=i64::MAX, &mut problems);
        if let Some(n) = number(&p, "size", 1..=i64::from(MAX_PAGE), &mut problems) {
            q.size = n as u32;
        }
        found(q, problems)
    }

    /// The store's filter.
    pub fn filter(&self) -> AuditFilter {
        AuditFilter {
            since: self.since,
            until: self.until,
            actor: self.actor.clone(),
            action: self.action.clone(),
            ground: self.ground,
            mentions: self.mentions.clone(),
            purpose: self.purpose.clone(),
            before: self.before,
            limit: Some(self.size),
        }
    }

    /// This query's string with another `before` (the next page's link).
    pub fn with_before(&self, before: Option<i64>) -> String {
        let since = self.since.map(|t| t.to_rfc3339());
        let until = self.until.map(|t| t.to_rfc3339());
        page_link(
            &[
                ("actor", self.actor.as_deref()),
                ("action", self.action.as_deref()),
                ("ground", self.ground.map(|g| g.as_str())),
                ("mentions", self.mentions.as_deref()),
                ("purpose", self.purpose.as_deref()),
                ("since", since.as_deref()),
                ("until", until.as_deref()),
            ],
            self.size,
            ("before", before),
        )
    }

    /// The same records from `GET /api/v1/audit`, as JSON: the filters,
    /// `before`, and the page's size as `limit`.
    pub fn api_query(&self) -> String {
        let mut q = AuditQuery {
            size: DEFAULT_PAGE,
            ..self.clone()
        }
        .with_before(self.before);
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(&format!("limit={}", self.size));
        q
    }
}

/// The dashboard's query: the charts' window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DashboardQuery {
    pub range: crate::dashboard::Range,
}

impl DashboardQuery {
    const KNOWN: &[&str] = &["range"];

    pub fn parse(raw: &str) -> Result<DashboardQuery, Vec<Problem>> {
        use crate::dashboard::Range;
        let (p, mut problems) = Params::known(raw, Self::KNOWN)?;
        let mut q = DashboardQuery { range: Range::Day };
        if let Some(r) = p.one("range") {
            match Range::parse(r) {
                Some(r) => q.range = r,
                None => problems.push(one_of("range", r, Range::ALL.iter().map(|r| r.as_str()))),
            }
        }
        found(q, problems)
    }
}

/// The subscriber list's query: a subscriber to open (`id`), or a page
/// of the list in id order after `after`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribersQuery {
    /// A subscriber id to open.
    pub id: Option<String>,
    /// The page after this subscriber id.
    pub after: Option<String>,
    pub size: u32,
}

impl SubscribersQuery {
    const KNOWN: &[&str] = &["id", "after", "size"];

    pub fn parse(raw: &str) -> Result<SubscribersQuery, Vec<Problem>> {
        let (p, mut problems) = Params::known(raw, Self::KNOWN)?;
        let mut q = SubscribersQuery {
            size: DEFAULT_PAGE,
            ..SubscribersQuery::default()
        };
        q.id = text(&p, "id", &mut problems);
        q.after = text(&p, "after", &mut problems);
        if let Some(n) = number(&p, "size", 1..=i64::from(MAX_PAGE), &mut problems) {
            q.size = n as u32;
        }
        found(q, problems)
    }

    /// This query's string with another `after`.
    pub fn with_after(&self, after: Option<&str>) -> String {
        page_link(&[("id", self.id.as_deref())], self.size, ("after", after))
    }
}

/// A subscriber page's query: the page of their bindings after
/// `after` (`START.ID`: a binding's start in Unix seconds and its id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberQuery {
    pub after: Option<(i64, i64)>,
    pub size: u32,
}

impl SubscriberQuery {
    const KNOWN: &[&str] = &["after", "size"];

    pub fn parse(raw: &str) -> Result<SubscriberQuery, Vec<Problem>> {
        let (p, mut problems) = Params::known(raw, Self::KNOWN)?;
        let mut q = SubscriberQuery {
            size: DEFAULT_PAGE,
            ..SubscriberQuery::default()
        };
        if let Some(a) = p.one("after") {
            match crate::directory::binding_position(a) {
                Some(at) => q.after = Some(at),
                None => problems.push(Problem::new(
                    format!(
                        "after must be a binding's position such as 1764547200.42, not {:?}.",
                        shown(a)
                    ),
                    format!(
                        "after は 1764547200.42 のような割り当ての位置で指定してください（{:?} は使えません）。",
                        shown(a)
                    ),
                )),
            }
        }
        if let Some(n) = number(&p, "size", 1..=i64::from(MAX_PAGE), &mut problems) {
            q.size = n as u32;
        }
        found(q, problems)
    }

    /// This query's string with another `after`.
    pub fn with_after(&self, after: Option<(i64, i64)>) -> String {
        page_link(
            &[],
            self.size,
            ("after", after.map(|(from, id)| format!("{from}.{id}"))),
        )
    }
}

/// A moment: RFC 3339, or a date (`2026-12-01`) meaning its midnight UTC,
/// or with `end_of_day` the midnight after it.
fn moment(
    p: &Params,
    name: &str,
    end_of_day: bool,
    problems: &mut Vec<Problem>,
) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    let v = p.one(name)?;
    let t = DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            let d = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
            let d = if end_of_day { d.succ_opt()? } else { d };
            Some(d.and_hms_opt(0, 0, 0)?.and_utc())
        });
    // Years a record can have, and that RFC 3339 can write back in the
    // pager's link (a year before 0 or past 9999 it cannot).
    if let Some(t) = t
        && (1970..=9999).contains(&t.year())
    {
        return Some(t);
    }
    problems.push(Problem::new(
        format!(
            "{name} must be a date such as 2026-12-01 or a moment such as 2026-12-01T09:30:00Z, from 1970 to 9999, not {:?}.",
            shown(v)
        ),
        format!(
            "{name} は 2026-12-01 のような日付か 2026-12-01T09:30:00Z のような日時で、1970 年から 9999 年までで指定してください（{:?} は使えません）。",
            shown(v)
        ),
    ));
    None
}

/// `since` and `until`, a range that does not end before it starts.
fn time_range(
    p: &Params,
    problems: &mut Vec<Problem>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let since = moment(p, "since", false, problems);
    let until = moment(p, "until", true, problems);
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        problems.push(Problem::new(
            "since must come before until.".to_string(),
            "since は until より前の日時を指定してください。".to_string(),
        ));
    }
    (since, until)
}

/// A moment as a form's field shows it again (`2026-12-01T09:30:00Z`),
/// empty when there is none.
pub fn moment_field(t: Option<DateTime<Utc>>) -> String {
    t.map_or(String::new(), |t| {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// The query, or every problem found in it.
fn found<Q>(q: Q, problems: Vec<Problem>) -> Result<Q, Vec<Problem>> {
    if problems.is_empty() {
        Ok(q)
    } else {
        Err(problems)
    }
}

/// A page's query string, escaped for a URL: the values given (an absent
/// one left out), the page size unless it is the default, and the cursor.
fn page_link<C: ToString>(
    given: &[(&str, Option<&str>)],
    size: u32,
    cursor: (&str, Option<C>),
) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in given {
        if let Some(v) = v {
            out.append_pair(k, v);
        }
    }
    if size != DEFAULT_PAGE {
        out.append_pair("size", &size.to_string());
    }
    if let (name, Some(at)) = cursor {
        out.append_pair(name, &at.to_string());
    }
    out.finish()
}

fn unknown(name: &str, known: &[&str]) -> Problem {
    Problem::new(
        format!(
            "Unknown parameter {:?}: this page takes {}.",
            shown(name),
            known.join(", ")
        ),
        format!(
            "不明なパラメータ {:?} です。使えるのは {} です。",
            shown(name),
            known.join(", ")
        ),
    )
}

/// A text value of at most [`MAX_TEXT`] characters.
fn text(p: &Params, name: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let t = p.one(name)?;
    if t.chars().count() > MAX_TEXT {
        problems.push(Problem::new(
            format!("{name} is longer than {MAX_TEXT} characters."),
            format!("{name} が {MAX_TEXT} 文字を超えています。"),
        ));
        return None;
    }
    Some(t.to_string())
}

/// One of a vocabulary's words.
fn vocabulary<'a, T: std::str::FromStr>(
    p: &Params,
    name: &str,
    all: impl Iterator<Item = &'a str>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let v = p.one(name)?;
    match v.parse::<T>() {
        Ok(t) => Some(t),
        Err(_) => {
            problems.push(one_of(name, v, all));
            None
        }
    }
}

fn one_of<'a>(name: &str, v: &str, all: impl Iterator<Item = &'a str>) -> Problem {
    let all: Vec<&str> = all.collect();
    Problem::new(
        format!(
            "{name} must be one of {}, not {:?}.",
            all.join(", "),
            shown(v)
        ),
        format!(
            "{name} は {} のいずれかで指定してください（{:?} は使えません）。",
            all.join(", "),
            shown(v)
        ),
    )
}

/// The case queue's cursor by last seen: `SEEN.ID` (Unix seconds, case id).
fn seen_cursor(seen: i64, id: i64) -> String {
    format!("{seen}.{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_query_parses_and_round_trips() {
        let q = CaseQuery::parse(
            "state=new,notified&severity=high&threat=mirai&age=7d&sort=oldest&after=10&size=20",
        )
        .unwrap();
        assert_eq!(q.states, [CaseState::New, CaseState::Notified]);
        assert_eq!(q.severity, Some(Severity::High));
        assert_eq!(q.threat.as_deref(), Some("mirai"));
        assert_eq!(q.sort, CaseSort::Oldest);
        assert_eq!((q.after, q.size), (Some(10), 20));
        let again = CaseQuery::parse(&q.with_after(Some(10))).unwrap();
        assert_eq!(again, q);
        let f = q.filter(Utc::now());
        assert_eq!((f.after, f.before, f.limit), (Some(10), None, Some(21)));
        assert_eq!(CaseQuery::parse("").unwrap().size, DEFAULT_PAGE);
    }

    #[test]
    fn by_last_seen_the_cursor_is_a_case_s_last_seen_and_id() {
        let q =
            CaseQuery::parse("sort=seen&feed=Sinkhole-Events+IPv4&after=1764547200.42").unwrap();
        assert_eq!(q.sort, CaseSort::Seen);
        assert_eq!(q.seen_after, Some((1764547200, 42)));
        assert_eq!(q.after, None);
        assert_eq!(q.feed.as_deref(), Some("Sinkhole-Events IPv4"));
        let f = q.filter(Utc::now());
        assert!(f.by_last_seen);
        assert_eq!(
            f.seen_before.map(|(t, id)| (t.timestamp(), id)),
            Some((1764547200, 42))
        );
        assert_eq!((f.after, f.before), (None, None));
        let again = CaseQuery::parse(&q.link()).unwrap();
        assert_eq!(again, q);
        for bad in ["42", "1764547200.0", "99999999999999999.1", "x.1"] {
            let e = CaseQuery::parse(&format!("sort=seen&after={bad}")).unwrap_err();
            assert!(e[0].en.contains("a case's position"), "{bad}: {e:?}");
        }
        assert!(
            CaseQuery::parse("after=1.2").is_err(),
            "an id sort's cursor is a number"
        );
    }

    #[test]
    fn a_subscriber_page_s_cursor_is_a_binding_s_start_and_id() {
        let q = SubscriberQuery::parse("after=1764547200.42&size=10").unwrap();
        assert_eq!((q.after, q.size), (Some((1_764_547_200, 42)), 10));
        assert_eq!(SubscriberQuery::parse(&q.with_after(q.after)), Ok(q));
        let bad = SubscriberQuery::parse("after=yesterday&size=500&id=S1").unwrap_err();
        let named: Vec<&str> = bad.iter().map(|p| p.en.as_str()).collect();
        assert_eq!(bad.len(), 3, "{named:?}");
        assert!(
            named[0].contains("id")
                && named[1].starts_with("after")
                && named[2].starts_with("size")
        );
        let q = SubscribersQuery::parse("after=S%26100").unwrap();
        assert_eq!(q.after.as_deref(), Some("S&100"));
        assert_eq!(SubscribersQuery::parse(&q.with_after(Some("S&100"))), Ok(q));
    }

    #[test]
    fn an_audit_query_reads_dates_as_whole_days_and_names_each_problem() {
        let q = AuditQuery::parse(
            "actor=officer&ground=consent&mentions=S1&purpose=case+42&since=2026-12-01&until=2026-12-02&size=20",
        )
        .unwrap();
        assert_eq!(q.ground, Some(Ground::Consent));
        assert_eq!(q.since.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        // The end of the day named: records of all of 2 December.
        assert_eq!(q.until.unwrap().to_rfc3339(), "2026-12-03T00:00:00+00:00");
        let f = q.filter();
        assert_eq!((f.actor.as_deref(), f.limit), (Some("officer"), Some(20)));
        assert!(q.api_query().contains("mentions=S1"), "{}", q.api_query());
        assert_eq!(f.purpose.as_deref(), Some("case 42"));
        assert!(
            q.api_query().contains("purpose=case%2042")
                || q.api_query().contains("purpose=case+42"),
            "{}",
            q.api_query()
        );
        // The next page's link keeps the filters and names the record it
        // starts before; the export takes the same page.
        let next = AuditQuery::parse(&q.with_before(Some(5))).unwrap();
        assert_eq!(next.before, Some(5));
        assert_eq!(
            AuditQuery {
                before: None,
                ..next.clone()
            },
            q
        );
        assert!(
            next.api_query().ends_with("before=5&limit=20"),
            "{}",
            next.api_query()
        );
        let at = AuditQuery::parse("since=2026-12-01T09:30:00%2B09:00").unwrap();
        assert_eq!(at.since.unwrap().to_rfc3339(), "2026-12-01T00:30:00+00:00");
        let e = AuditQuery::parse("ground=whim&since=yesterday&size=0&seq=3").unwrap_err();
        let all: Vec<&str> = e.iter().map(|p| p.en.as_str()).collect();
        assert_eq!(e.len(), 4, "{all:?}");
        assert!(
            all.iter()
                .any(|m| m.contains("ground must be one of consent"))
        );
        assert!(all.iter().any(|m| m.starts_with("since must be a date")));
        // Years a record cannot have are named, not read (a negative year
        // was not written back readably; found by the fuzz target).
        for bad in ["until=-0004-12-04", "since=1969-12-31", "until=9999-12-31"] {
            let e = AuditQuery::parse(bad).unwrap_err();
            assert!(e[0].en.contains("from 1970 to 9999"), "{bad}: {e:?}");
        }
        let e = AuditQuery::parse("since=2026-12-02&until=2026-12-01").unwrap_err();
        assert!(e[0].en.contains("since must come before until"), "{e:?}");
    }

    #[test]
    fn out_of_range_values_are_each_named() {
        let e = CaseQuery::parse("size=1000000&sort=sideways&age=-1d&after=0&state=gone&page=2")
            .unwrap_err();
        let all: Vec<&str> = e.iter().map(|p| p.en.as_str()).collect();
        assert_eq!(e.len(), 6, "{all:?}");
        assert!(
            all.iter()
                .any(|m| m.contains("size must be a whole number from 1 to 200"))
        );
        assert!(
            all.iter()
                .any(|m| m.contains("sort must be one of newest, oldest"))
        );
        assert!(all.iter().any(|m| m.contains("age must be hours or days")));
        assert!(all.iter().any(|m| m.starts_with("after must be")));
        assert!(all.iter().any(|m| m.contains("state must be one of new,")));
        assert!(all.iter().any(|m| m.contains("Unknown parameter \"page\"")));
        assert!(e.iter().all(|p| !p.ja.is_empty()));
        assert!(CaseQuery::parse("age=99999d").is_err());
        // A multi-byte last character is an invalid age, not a panic
        // (found by the console_query fuzz target).
        assert!(CaseQuery::parse("age=3650%E3%82%A4").is_err());
        assert!(CaseQuery::parse("age=%E3%82%A4").is_err());
        assert_eq!(
            CaseQuery::parse("age=24h").unwrap().age.as_deref(),
            Some("24h")
        );
        assert!(CaseQuery::parse(&"a=1&".repeat(40)).is_err());
        assert!(CaseQuery::parse(&"x".repeat(MAX_QUERY + 1)).is_err());
    }

    #[test]
    fn the_indicator_search_checks_its_vocabularies() {
        let q =
            IndicatorQuery::parse("q=bad.example&category=exploit&status=active&kind=url&size=10")
                .unwrap();
        assert_eq!(q.category, Some(Category::Exploit));
        assert_eq!(IndicatorQuery::parse(&q.with_after(None)).unwrap(), q);
        let e = IndicatorQuery::parse("category=<script>&status=gone&tlp=purple").unwrap_err();
        assert_eq!(e.len(), 3);
        assert!(e[2].en.contains("tlp must be one of clear, green"), "{e:?}");
        assert!(
            IndicatorQuery::parse("colour=red").unwrap_err()[0]
                .en
                .contains("Unknown parameter \"colour\"")
        );
    }

    #[test]
    fn the_indicator_search_takes_a_tlp_and_a_first_seen_range() {
        let q =
            IndicatorQuery::parse("tlp=amber%2Bstrict&since=2026-12-01&until=2026-12-01").unwrap();
        assert_eq!(q.tlp, Some(Tlp::AmberStrict));
        let list = q.list();
        assert_eq!(
            list.first_seen_since.unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            list.first_seen_until.unwrap().to_rfc3339(),
            "2026-12-02T00:00:00+00:00",
            "a date ends at its end"
        );
        assert_eq!(
            IndicatorQuery::parse(&q.with_after(Some(7))).unwrap().after,
            Some(7)
        );
        assert_eq!(
            IndicatorQuery::parse(&q.with_after(None)).unwrap(),
            q,
            "the pager keeps the filters"
        );
        let e = IndicatorQuery::parse("since=2026-12-02&until=2026-12-01").unwrap_err();
        assert!(e[0].en.contains("since must come before until"), "{e:?}");
        let e = IndicatorQuery::parse("since=yesterday").unwrap_err();
        assert!(e[0].en.starts_with("since must be a date"), "{e:?}");
    }
}
