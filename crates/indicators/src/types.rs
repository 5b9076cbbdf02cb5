use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An unknown name for one of the closed vocabularies below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct ParseEnumError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Generates a closed vocabulary with a stable kebab-case spelling used in
/// the store, the API, the exports and the configuration alike.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($text) {
                    return Ok($name::$variant);
                })+
                Err(ParseEnumError {
                    what: $what,
                    value: s.to_string(),
                    expected: concat!($($text, " "),+),
                })
            }
        }
    };
}

vocabulary!(
    /// What an indicator's value is.
    Kind, "kind", {
        Url => "url",
        Domain => "domain",
        /// An IPv4 or IPv6 address or CIDR block.
        Ip => "ip",
    }
);

vocabulary!(
    /// Why an indicator is listed.
    Category, "category", {
        /// Serves malware for download (ACTIVE's マルウェア配布サイト).
        MalwareDistribution => "malware-distribution",
        /// Serves an exploit kit or drive-by exploit (攻撃サイト).
        Exploit => "exploit",
        /// Redirects visitors toward an exploit or distribution site.
        Redirector => "redirector",
        /// A compromised entrance site (入口サイト): a real site carrying injected content.
        Entrance => "entrance",
        /// Command-and-control server of a botnet.
        C2 => "c2",
        Phishing => "phishing",
        Scam => "scam",
        /// Anything a source could not classify further.
        Other => "other",
    }
);

vocabulary!(
    /// Lifecycle state of an indicator.
    Status, "status", {
        Active => "active",
        /// No source has seen it within its time to live.
        Expired => "expired",
        /// An allowlist entry covers it; the allowlist wins over every source.
        Allowlisted => "allowlisted",
        /// An operator judged the listing wrong.
        FalsePositive => "false-positive",
        /// Removed from the list after the site was cleaned.
        Delisted => "delisted",
    }
);

vocabulary!(
    /// Traffic Light Protocol 2.0 marking.
    Tlp, "TLP", {
        Clear => "clear",
        Green => "green",
        Amber => "amber",
        AmberStrict => "amber+strict",
        Red => "red",
    }
);

impl Status {
    /// Whether an indicator in this state belongs on the enforced list.
    pub fn is_listed(self) -> bool {
        self == Status::Active
    }

    /// States an operator set by hand; a feed seeing the indicator again does
    /// not undo them.
    pub fn is_sticky(self) -> bool {
        matches!(self, Status::FalsePositive | Status::Delisted)
    }
}

impl Category {
    /// Maps the many spellings used by feeds onto kanki's categories.
    pub fn from_feed_label(label: &str) -> Category {
        let l = label.trim();
        if let Some(c) = Category::ALL
            .iter()
            .find(|c| l.eq_ignore_ascii_case(c.as_str()))
        {
            return *c;
        }
        let lower;
        let l = if l.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = l.to_ascii_lowercase();
            lower.as_str()
        } else {
            l
        };
        match l {
            "malware_download" | "malware" | "payload_delivery" | "payload" | "distribution" => {
                Category::MalwareDistribution
            }
            "botnet_cc" | "c&c" | "cc" | "command-and-control" | "botnet" => Category::C2,
            "phish" | "phishing_site" => Category::Phishing,
            "exploit_kit" | "ek" => Category::Exploit,
            "redirect" => Category::Redirector,
            "compromised" => Category::Entrance,
            _ => Category::Other,
        }
    }
}

impl Tlp {
    /// Accepts `TLP:AMBER+STRICT` as well as `amber+strict`; `white` is TLP 1.0's `clear`.
    pub fn parse_marking(s: &str) -> Result<Tlp, ParseEnumError> {
        let t = s.trim();
        let t = t
            .strip_prefix("TLP:")
            .or_else(|| t.strip_prefix("tlp:"))
            .unwrap_or(t);
        if t.eq_ignore_ascii_case("white") {
            return Ok(Tlp::Clear);
        }
        t.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), *c);
        }
        assert_eq!(
            "False-Positive".parse::<Status>().unwrap(),
            Status::FalsePositive
        );
        assert!("listed".parse::<Status>().is_err());
    }

    #[test]
    fn feed_labels_map_to_categories() {
        assert_eq!(
            Category::from_feed_label("malware_download"),
            Category::MalwareDistribution
        );
        assert_eq!(Category::from_feed_label("botnet_cc"), Category::C2);
        assert_eq!(Category::from_feed_label("weird"), Category::Other);
    }

    #[test]
    fn tlp_markings() {
        assert_eq!(
            Tlp::parse_marking("TLP:AMBER+STRICT").unwrap(),
            Tlp::AmberStrict
        );
        assert_eq!(Tlp::parse_marking("white").unwrap(), Tlp::Clear);
        assert!(Tlp::parse_marking("TLP:PURPLE").is_err());
    }
}
