//! Synthetic feeds for benchmarks: deterministic, realistic in shape, and
//! made only of reserved names (`.example`, `.test`, `.invalid`,
//! `example.com`/`.net`/`.org`) and the benchmarking range 198.18.0.0/15.

use std::io::Write;

use chrono::DateTime;

/// A small deterministic PRNG (SplitMix64); good enough to vary test data.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "alpha", "amber", "apex", "arrow", "atlas", "aurora", "beacon", "birch", "blue", "bolt",
    "bridge", "cedar", "cloud", "cobalt", "comet", "coral", "crest", "delta", "drift", "eagle",
    "echo", "ember", "falcon", "fern", "flux", "forge", "frost", "garnet", "glade", "granite",
    "harbor", "hazel", "helix", "indigo", "iris", "jade", "juniper", "karma", "kite", "lagoon",
    "lark", "lumen", "maple", "meadow", "mesa", "nimbus", "nova", "oak", "onyx", "orbit", "pebble",
    "pixel", "prism", "quartz", "raven", "ridge", "sable", "sierra", "spark", "summit", "tango",
    "terra", "umber", "vertex", "willow", "zenith",
];
const TLDS: &[&str] = &[
    "example",
    "test",
    "invalid",
    "example.com",
    "example.net",
    "example.org",
];
const SUBS: &[&str] = &["www", "cdn", "files", "dl", "static", "update", "mail", "m"];
const FILES: &[&str] = &[
    "i",
    "Mozi.m",
    "Mozi.a",
    "bins/x86",
    "bins/mips",
    "bins/arm7",
    "sh",
    "jaws",
    "t.sh",
];
const EXTS: &[&str] = &["exe", "zip", "doc", "js", "php", "apk", "dll", "bin"];
const TAGS: &[&[&str]] = &[
    &["32-bit", "elf", "mips", "Mozi"],
    &["32-bit", "arm", "elf", "Mozi"],
    &["elf", "ua-wget"],
    &["exe", "AsyncRAT"],
    &["exe", "SmokeLoader"],
    &["doc", "Emotet", "heodo"],
    &["zip", "Formbook"],
    &["ascii", "sh"],
    &[],
];
const REPORTERS: &[&str] = &[
    "geenensp",
    "abuse_ch",
    "Cryptolaemus1",
    "lrz_urlhaus",
    "zbetcheckin",
    "NDA0E",
];

/// A URLhaus CSV dump of `rows` rows, as abuse.ch writes it: the comment
/// banner, the commented header, then fully quoted rows, newest first.
/// About a third of the URLs are on IP addresses with a port; hosts repeat
/// across rows (several URLs on one site), URLs do not.
pub fn urlhaus_csv(rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(rows * 170 + 1024);
    out.extend_from_slice(
        b"################################################################\n\
# abuse.ch URLhaus Database Dump (CSV)                         #\n\
# Last updated: 2024-11-20 10:18:08 (UTC)                      #\n\
#                                                              #\n\
# Terms Of Use: https://urlhaus.abuse.ch/api/                  #\n\
# For questions please contact urlhaus [at] abuse.ch           #\n\
################################################################\n\
#\n\
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n",
    );
    let newest: i64 = 1_732_097_465; // 2024-11-20 10:11:05 UTC
    let first_id = 3_300_000u64;
    // Sites: enough that hosts repeat a few times each.
    let sites = (rows as u64 / 4).max(16);
    for i in 0..rows as u64 {
        let id = first_id + rows as u64 - i;
        let added = newest - (i as i64) * 31 - rng.below(30) as i64;
        let site = rng.below(sites);
        let mut url = String::with_capacity(96);
        if site.is_multiple_of(3) {
            // 198.18.0.0/15, the benchmarking range.
            let n = (site * 2_654_435_761) % (1 << 17);
            let port = 1024 + (site % 60_000);
            url.push_str(&format!(
                "http://198.{}.{}.{}:{port}/{}",
                18 + (n >> 16),
                (n >> 8) & 255,
                n & 255,
                rng.pick(FILES)
            ));
            if rng.below(2) == 0 {
                url.push_str(&format!("?n={id}"));
            } else {
                url.push_str(&format!(".{id}"));
            }
        } else {
            let scheme = if rng.below(3) == 0 { "https" } else { "http" };
            let w1 = WORDS[(site % WORDS.len() as u64) as usize];
            let w2 = WORDS[((site / 7) % WORDS.len() as u64) as usize];
            let tld = TLDS[((site / 11) % TLDS.len() as u64) as usize];
            let host = match site % 4 {
                0 => format!("{w1}-{w2}{}.{tld}", site % 1000),
                1 => format!("{}.{w1}{w2}{}.{tld}", SUBS[(site % 8) as usize], site % 997),
                _ => format!("{w1}{w2}{}.{tld}", site),
            };
            let w3 = rng.pick(WORDS);
            let path = match rng.below(4) {
                0 => format!(
                    "/wp-content/uploads/2024/{:02}/{w3}{id}.{}",
                    1 + rng.below(12),
                    rng.pick(EXTS)
                ),
                1 => format!("/{w3}/{}.php?id={id}", rng.pick(WORDS)),
                2 => format!("/{w3}-{id}.{}", rng.pick(EXTS)),
                _ => format!("/files/{id}/{w3}.{}", rng.pick(EXTS)),
            };
            url.push_str(scheme);
            url.push_str("://");
            url.push_str(&host);
            url.push_str(&path);
        }
        let online = rng.below(5) == 0;
        let date = DateTime::from_timestamp(added, 0)
            .expect("in range")
            .naive_utc();
        let last = if online {
            DateTime::from_timestamp(added + rng.below(3600) as i64, 0)
                .expect("in range")
                .naive_utc()
                .to_string()
        } else {
            String::new()
        };
        let tags = rng.pick(TAGS).join(",");
        writeln!(
            out,
            "\"{id}\",\"{date}\",\"{url}\",\"{}\",\"{last}\",\"malware_download\",\"{tags}\",\"https://urlhaus.abuse.ch/url/{id}/\",\"{}\"",
            if online { "online" } else { "offline" },
            rng.pick(REPORTERS),
        )
        .expect("writing to a Vec");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::urlhaus_csv;
    use crate::{Format, Row, parse_bytes};

    #[test]
    fn synthetic_dump_parses_cleanly_and_is_deterministic() {
        let data = urlhaus_csv(2000, 7);
        assert_eq!(data, urlhaus_csv(2000, 7));
        assert_ne!(data, urlhaus_csv(2000, 8));
        let rows = parse_bytes(Format::Urlhaus, &data).unwrap();
        assert_eq!(rows.len(), 2000);
        let mut urls = std::collections::HashSet::new();
        let mut ip_hosts = 0;
        for r in &rows {
            let Row::Record(r) = r else { panic!("{r:?}") };
            assert!(
                urls.insert(r.indicator.value.clone()),
                "{}",
                r.indicator.value
            );
            ip_hosts += usize::from(r.indicator.host.is_none());
        }
        assert!((400..900).contains(&ip_hosts), "{ip_hosts}");
    }
}
