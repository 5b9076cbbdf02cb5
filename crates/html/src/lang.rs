//! Japanese or English: every page of kanki speaks both.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language's name, in that language: the switch's label.
    pub fn other_name(self) -> &'static str {
        match self {
            Lang::Ja => "English",
            Lang::En => "日本語",
        }
    }

    /// The preferred of Japanese and English in an Accept-Language header
    /// (RFC 9110 12.5.4: `ja,en-US;q=0.9,en;q=0.8`): the higher quality
    /// wins, the earlier on a tie; `None` when it names neither (or only
    /// with q=0). Entries that do not parse are skipped.
    pub fn negotiate(header: &str) -> Option<Lang> {
        let mut best: Option<(Lang, u16)> = None;
        // A header of hundreds of entries is not a browser's: the first 32 decide.
        for entry in header.split(',').take(32) {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            let lang = if primary.eq_ignore_ascii_case("ja") {
                Lang::Ja
            } else if primary.eq_ignore_ascii_case("en") {
                Lang::En
            } else {
                continue;
            };
            let mut q = Some(1000);
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")) {
                    q = quality(v);
                }
            }
            let Some(q) = q else { continue };
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((lang, q));
            }
        }
        best.map(|(l, _)| l)
    }
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn quality(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_the_two() {
        assert_eq!(Lang::negotiate("ja,en-US;q=0.9,en;q=0.8"), Some(Lang::Ja));
        assert_eq!(Lang::negotiate("en-US,en;q=0.9,ja;q=0.8"), Some(Lang::En));
        assert_eq!(Lang::negotiate("fr-FR, ja;q=0.5, en;q=0.7"), Some(Lang::En));
        assert_eq!(Lang::negotiate("fr, de;q=0.5"), None);
        assert_eq!(Lang::negotiate("en;q=0, ja;q=0.1"), Some(Lang::Ja));
        assert_eq!(
            Lang::negotiate("en;q=2, ja;q=0.1"),
            Some(Lang::Ja),
            "q=2 is malformed"
        );
        assert_eq!(Lang::negotiate("JA-jp"), Some(Lang::Ja));
        assert_eq!(Lang::negotiate(""), None);
        assert_eq!(Lang::negotiate(";;;,,,q=,"), None);
    }
}
