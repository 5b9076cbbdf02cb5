//! The time formats binding sources write, parsed without allocating.
//!
//! Every result is UTC and whole seconds (fractions are dropped).

use chrono::{DateTime, Utc};

/// A UTC time from Unix seconds.
pub(crate) fn unix(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian), or
/// `None` for a date that does not exist.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Unix seconds of a civil UTC date and time; `None` if any part is out of
/// range (a leap second `:60` included).
pub(crate) fn civil(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s))
}

/// A civil UTC time as a `DateTime`.
pub(crate) fn civil_utc(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<DateTime<Utc>> {
    unix(civil(y, mo, d, h, mi, s)?)
}

/// Exactly `n` ASCII digits at the start of `b`, as a number.
fn digits(b: &[u8], n: usize) -> Option<u32> {
    let d = b.get(..n)?;
    let mut v = 0u32;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// One or two ASCII digits (a day of month written `%e` or `%d`).
fn one_or_two_digits(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    match b.len() {
        1 | 2 => digits(b, b.len()),
        _ => None,
    }
}

/// `YYYY<sep>MM<sep>DD` at the start of `b`.
fn ymd(b: &[u8], sep: u8) -> Option<(i64, u32, u32)> {
    if b.len() < 10 || b[4] != sep || b[7] != sep {
        return None;
    }
    Some((
        i64::from(digits(b, 4)?),
        digits(&b[5..], 2)?,
        digits(&b[8..], 2)?,
    ))
}

/// `HH:MM:SS` at the start of `b`.
fn hms(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((digits(b, 2)?, digits(&b[3..], 2)?, digits(&b[6..], 2)?))
}

/// Skips a `.fraction` at the start of `b`; returns the rest.
fn skip_fraction(b: &[u8]) -> &[u8] {
    if b.first() == Some(&b'.') || b.first() == Some(&b',') {
        let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 {
            return &b[1 + n..];
        }
    }
    b
}

/// A zone designator that is the whole of `b`: `Z`, `±HH:MM`, `±HHMM` or
/// `±HH`; the offset east of UTC in seconds.
fn zone(b: &[u8]) -> Option<i64> {
    match b {
        b"Z" | b"z" => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest.len() {
                2 => (digits(rest, 2)?, 0),
                4 => (digits(rest, 2)?, digits(&rest[2..], 2)?),
                5 if rest[2] == b':' => (digits(rest, 2)?, digits(&rest[3..], 2)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + m * 60);
            Some(if *sign == b'-' { -off } else { off })
        }
        _ => None,
    }
}

/// The times of operator-written files (static assignments, CGNAT CSV):
/// RFC 3339 (`2026-11-16T12:00:00Z`, `2026-11-16T21:00:00+09:00`, with or
/// without a fraction), `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` and
/// `YYYY-MM-DDTHH:MM[:SS]`. A time without a zone is UTC.
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let b = s.trim().as_bytes();
    let (y, mo, d) = ymd(b, b'-')?;
    let rest = &b[10..];
    if rest.is_empty() {
        return civil_utc(y, mo, d, 0, 0, 0);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') {
        return None;
    }
    let t = &rest[1..];
    if t.len() < 5 || t[2] != b':' {
        return None;
    }
    let (h, mi) = (digits(t, 2)?, digits(&t[3..], 2)?);
    let mut rest = &t[5..];
    let mut sec = 0;
    if rest.first() == Some(&b':') {
        sec = digits(&rest[1..], 2)?;
        rest = skip_fraction(&rest[3..]);
    }
    let off = if rest.is_empty() { 0 } else { zone(rest)? };
    unix(civil(y, mo, d, h, mi, sec)? - off)
}

/// A month abbreviation (`Jan` … `Dec`, any case).
pub(crate) fn month(s: &str) -> Option<u32> {
    const NAMES: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let b = s.as_bytes();
    if b.len() != 3 {
        return None;
    }
    let lower = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    NAMES
        .iter()
        .position(|n| **n == lower)
        .map(|i| i as u32 + 1)
}

/// A year written as four digits.
fn year(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    (b.len() == 4)
        .then(|| digits(b, 4))
        .flatten()
        .map(i64::from)
}

/// `HH:MM:SS` with an optional fraction, the whole of `s`.
fn clock(s: &str) -> Option<(u32, u32, u32)> {
    let b = s.as_bytes();
    let t = hms(b)?;
    skip_fraction(&b[8..]).is_empty().then_some(t)
}

/// dhcpd's `YYYY/MM/DD` and `HH:MM:SS` (UTC, the default `db-time-format`).
pub(crate) fn dhcpd_date_time(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let b = date.as_bytes();
    if b.len() != 10 {
        return None;
    }
    let (y, mo, d) = ymd(b, b'/')?;
    let (h, mi, s) = clock(time)?;
    civil_utc(y, mo, d, h, mi, s)
}

/// A `ctime`-style date: `Mon Nov 16 12:00:00 2026` (weekday, month, day,
/// time, year; the day may be padded with a space). The weekday is not
/// checked. Taken as UTC.
pub(crate) fn ctime(s: &str) -> Option<DateTime<Utc>> {
    let mut it = s.split_ascii_whitespace();
    let (_wday, mon, day, time, yr) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let (h, mi, sec) = clock(time)?;
    civil_utc(year(yr)?, month(mon)?, one_or_two_digits(day)?, h, mi, sec)
}

/// The offset of a time-zone abbreviation FreeRADIUS may print, where it
/// is not ambiguous.
fn zone_abbreviation(s: &str) -> Option<i64> {
    const ZONES: [(&str, i64); 6] = [
        ("UTC", 0),
        ("GMT", 0),
        ("UT", 0),
        ("Z", 0),
        ("JST", 9 * 3600),
        ("KST", 9 * 3600),
    ];
    ZONES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|&(_, off)| off)
        .or_else(|| zone(s.as_bytes()))
}

/// A RADIUS date attribute as FreeRADIUS prints it: `Nov 16 2026
/// 12:00:00 JST` (month, day, year, time, zone: `UTC`, `GMT`, `JST`,
/// `KST` or a numeric offset), Unix seconds, or RFC 3339. `None` when the
/// zone is not one of those, so that the caller can fall back.
pub(crate) fn radius_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return unix(s.parse().ok()?);
    }
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return parse_datetime(s);
    }
    let mut it = s.split_ascii_whitespace();
    let (mon, day, yr, time, tz) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let (h, mi, sec) = clock(time)?;
    let off = zone_abbreviation(tz)?;
    let t = civil(year(yr)?, month(mon)?, one_or_two_digits(day)?, h, mi, sec)?;
    unix(t - off)
}

/// A timestamp at the start of `s`, as syslog writers put them, with what
/// follows it. `Some(time)` when the timestamp has a year: RFC 3339 (the
/// RFC 5424 and rsyslog form; a missing zone is UTC), `YYYY-MM-DD
/// HH:MM:SS`, or `YYYY Mon DD HH:MM:SS` (Cisco CGN; UTC). `None` inside
/// for the BSD form `Mon DD HH:MM:SS`, which has no year. `None` when `s`
/// does not start with one of these, or with an impossible date.
pub(crate) fn syslog_stamp(s: &str) -> Option<(Option<DateTime<Utc>>, &str)> {
    let b = s.as_bytes();
    // RFC 3339, or the same with a space for `T` (then without a zone).
    if b.len() >= 19 && ymd(b, b'-').is_some() {
        // An RFC 3339 time is at most 35 bytes: look no further, so that
        // scanning a long line word by word stays linear.
        let window = &b[..b.len().min(40)];
        let end = window
            .iter()
            .enumerate()
            .skip(11)
            .find(|(_, c)| c.is_ascii_whitespace())
            .map_or(window.len(), |(i, _)| i);
        if matches!(b[10], b'T' | b't') {
            let at = parse_datetime(s.get(..end)?)?;
            return Some((Some(at), &s[end..]));
        }
        if b[10] == b' ' && hms(&b[11..]).is_some() {
            let end = 19 + (b.len() - 19 - skip_fraction(&b[19..]).len());
            return Some((Some(parse_datetime(&s[..end])?), &s[end..]));
        }
        return None;
    }
    let mut words = s.split_ascii_whitespace();
    let first = words.next()?;
    if year(first).is_some() {
        // YYYY Mon DD HH:MM:SS[.fff]
        let (mon, day, time) = (words.next()?, words.next()?, words.next()?);
        let (h, mi, sec) = clock(time)?;
        let t = civil_utc(
            year(first)?,
            month(mon)?,
            one_or_two_digits(day)?,
            h,
            mi,
            sec,
        )?;
        let end = time.as_ptr() as usize - s.as_ptr() as usize + time.len();
        return Some((Some(t), &s[end..]));
    }
    if month(first).is_some() {
        let (day, time) = (words.next()?, words.next()?);
        one_or_two_digits(day)?;
        clock(time)?;
        let end = time.as_ptr() as usize - s.as_ptr() as usize + time.len();
        return Some((None, &s[end..]));
    }
    None
}

/// The first timestamp with a year that starts a word of `s` (the forms
/// of [`syslog_stamp`]): the time a Juniper services card puts inside its
/// messages, or a Cisco header behind a collector's own BSD timestamp.
pub(crate) fn embedded_datetime(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()))
        .find_map(|i| syslog_stamp(&s[i..]).and_then(|(t, _)| t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn civil_matches_chrono() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:34:56Z",
            "2026-11-16T12:00:00Z",
            "1969-12-31T23:59:59Z",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(parse_datetime(s).unwrap().timestamp(), t(s), "{s}");
        }
        assert!(parse_datetime("2026-02-29").is_none());
        assert!(parse_datetime("2026-13-01").is_none());
        assert!(parse_datetime("2026-01-01 24:00:00").is_none());
    }

    #[test]
    fn operator_times() {
        let want = t("2026-11-16T12:00:00Z");
        for s in [
            "2026-11-16T12:00:00Z",
            "2026-11-16T21:00:00+09:00",
            "2026-11-16T21:00:00.250+0900",
            "2026-11-16 12:00:00",
            "2026-11-16 12:00",
            "2026-11-16t12:00:00z",
            " 2026-11-16T12:00:00Z ",
        ] {
            assert_eq!(parse_datetime(s).map(|d| d.timestamp()), Some(want), "{s}");
        }
        assert_eq!(
            parse_datetime("2026-11-16").unwrap().timestamp(),
            t("2026-11-16T00:00:00Z")
        );
        for bad in [
            "",
            "2026-11-16X",
            "2026-11-16T12",
            "16/11/2026",
            "2026-11-16T12:00:00+25:00",
        ] {
            assert!(parse_datetime(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dhcpd_and_ctime_and_radius() {
        assert_eq!(
            dhcpd_date_time("2026/11/16", "12:00:00")
                .unwrap()
                .timestamp(),
            t("2026-11-16T12:00:00Z")
        );
        assert_eq!(
            ctime("Mon Nov  2 09:05:01 2026").unwrap().timestamp(),
            t("2026-11-02T09:05:01Z")
        );
        assert_eq!(
            radius_date("Nov 16 2026 21:00:00 JST").unwrap().timestamp(),
            t("2026-11-16T12:00:00Z")
        );
        assert_eq!(
            radius_date("Nov  2 2026 12:00:00 UTC").unwrap().timestamp(),
            t("2026-11-02T12:00:00Z")
        );
        assert_eq!(
            radius_date("1794830400").unwrap().timestamp(),
            1_794_830_400
        );
        assert!(radius_date("Nov 16 2026 12:00:00 CET").is_none());
    }

    #[test]
    fn syslog_stamps() {
        let (at, rest) = syslog_stamp("2026-11-16T21:00:00.123+09:00 cgn1 msg").unwrap();
        assert_eq!(at.unwrap().timestamp(), t("2026-11-16T12:00:00Z"));
        assert_eq!(rest, " cgn1 msg");
        let (at, rest) = syslog_stamp("2026 Nov 16 12:00:00.123 cgn2 - - NAT44").unwrap();
        assert_eq!(at.unwrap().timestamp(), t("2026-11-16T12:00:00Z"));
        assert_eq!(rest, " cgn2 - - NAT44");
        let (at, rest) = syslog_stamp("Nov  6 12:00:00 mx1 x").unwrap();
        assert!(at.is_none());
        assert_eq!(rest, " mx1 x");
        assert!(syslog_stamp("hello world").is_none());
        assert!(syslog_stamp("2026-02-30T00:00:00Z x").is_none());
        assert!(syslog_stamp("2026-11-16Tééééééééééééééééééééé").is_none());
        assert_eq!(
            embedded_datetime("mx1 (FPC Slot 1) 2026-11-16 12:00:00: {s}")
                .unwrap()
                .timestamp(),
            t("2026-11-16T12:00:00Z")
        );
        assert_eq!(
            embedded_datetime("Nov 16 12:00:01 10.0.0.1 <134>1 2026 Nov 16 12:00:00.5 cgn")
                .unwrap()
                .timestamp(),
            t("2026-11-16T12:00:00Z")
        );
        assert!(embedded_datetime("port 50122 ssh2 1234").is_none());
    }
}
