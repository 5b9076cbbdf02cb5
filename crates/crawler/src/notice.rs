//! Notices to the administrators of compromised entrance sites (ACTIVE's
//! third prevention step): who to tell, and the message with the chain.
//!
//! The contact is looked for, in order:
//! 1. the site's `/.well-known/security.txt` (RFC 9116) `Contact: mailto:`;
//! 2. the abuse entity of the RDAP record of the site's domain (then of
//!    its parent domains, up to the last two labels);
//! 3. the abuse entity of the RDAP record of the site's address;
//! 4. the configured fallback recipient;
//!
//! and otherwise the notice is queued with no recipient, for an operator.
//! Every request goes through the crawler's fetcher, so the SSRF guard
//! applies to these too. Answers are cached for a day ([`CONTACT_TTL`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use data_encoding::BASE64;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Fetcher, Node, Tree};

/// The contacts found for a site, and where each came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    /// `(address, source)`, best first; source is `security.txt`,
    /// `rdap-domain NAME`, `rdap-ip ADDRESS` or `fallback`.
    pub found: Vec<(String, String)>,
    /// What was tried and did not give a contact.
    pub tried: Vec<String>,
}

impl Contacts {
    pub fn recipient(&self) -> Option<&str> {
        self.found.first().map(|(a, _)| a.as_str())
    }
}

/// Looks up contacts, with a cache: an answer (or its absence) is reused
/// for [`CONTACT_TTL`], so a busy registrar's RDAP server is asked once a
/// day per name, not once per crawl.
#[derive(Default)]
pub struct ContactFinder {
    cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

/// How long a looked-up contact is reused.
pub const CONTACT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Whether an address found in outside data can go into a `To:` header:
/// one `@`, no whitespace or control characters (no header injection).
fn usable_address(a: &str) -> bool {
    a.matches('@').count() == 1
        && !a.starts_with('@')
        && !a.ends_with('@')
        && !a.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `Contact: mailto:` addresses of a security.txt.
pub fn security_txt_contacts(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("contact") {
                return None;
            }
            let v = v.trim();
            let addr = v
                .strip_prefix("mailto:")
                .or_else(|| v.strip_prefix("MAILTO:"))?;
            let addr = addr.split('?').next().unwrap_or(addr).trim();
            usable_address(addr).then(|| addr.to_string())
        })
        .collect()
}

/// E-mail addresses of the entities with the `abuse` role in an RDAP
/// answer (RFC 9083), nested entities included.
pub fn rdap_abuse_emails(json: &[u8]) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>, depth: u8) {
        if depth > 8 {
            return;
        }
        let Some(entities) = v.get("entities").and_then(|e| e.as_array()) else {
            return;
        };
        for e in entities {
            let abuse = e
                .get("roles")
                .and_then(|r| r.as_array())
                .is_some_and(|r| r.iter().any(|x| x == "abuse"));
            if abuse
                && let Some(card) = e
                    .get("vcardArray")
                    .and_then(|c| c.get(1))
                    .and_then(|c| c.as_array())
            {
                for prop in card {
                    if prop.get(0).and_then(|p| p.as_str()) == Some("email")
                        && let Some(addr) = prop.get(3).and_then(|a| a.as_str())
                        && usable_address(addr)
                        && !out.iter().any(|o| o == addr)
                    {
                        out.push(addr.to_string());
                    }
                }
            }
            walk(e, out, depth + 1);
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) {
        walk(&v, &mut out, 0);
    }
    out
}

impl ContactFinder {
    async fn cached(
        &self,
        key: String,
        fetcher: &Fetcher,
        url: &str,
        parse: fn(&[u8]) -> Vec<String>,
    ) -> Vec<String> {
        if let Some((at, v)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < CONTACT_TTL
        {
            return v.clone();
        }
        let found = match Url::parse(url) {
            Ok(u) => {
                let f = fetcher.fetch(&u, None).await;
                if f.status == Some(200) {
                    parse(&f.body)
                } else {
                    Vec::new()
                }
            }
            Err(_) => Vec::new(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, (at, _)| at.elapsed() < CONTACT_TTL);
        }
        cache.insert(key, (Instant::now(), found.clone()));
        found
    }

    /// The contacts for the site of `url`, served from `address`.
    pub async fn find(
        &self,
        fetcher: &Fetcher,
        url: &str,
        address: Option<&str>,
        rdap_base: &str,
        fallback: &str,
    ) -> Contacts {
        let mut c = Contacts::default();
        let Ok(u) = Url::parse(url) else {
            return c;
        };
        let base = format!("{}/", rdap_base.trim_end_matches('/'));
        if let Some(origin) = u.host_str().map(|_| u.origin().ascii_serialization()) {
            let st = format!("{origin}/.well-known/security.txt");
            let found = self
                .cached(format!("st {origin}"), fetcher, &st, |b| {
                    security_txt_contacts(&String::from_utf8_lossy(b))
                })
                .await;
            push(&mut c, found, "security.txt", &st);
        }
        if let Some(url::Host::Domain(d)) = u.host() {
            let labels: Vec<&str> = d.split('.').collect();
            for i in 0..labels.len().saturating_sub(1) {
                let name = labels[i..].join(".");
                let q = format!("{base}domain/{name}");
                let found = self
                    .cached(format!("rd {name}"), fetcher, &q, rdap_abuse_emails)
                    .await;
                let hit = !found.is_empty();
                push(&mut c, found, &format!("rdap-domain {name}"), &q);
                if hit {
                    break;
                }
            }
        }
        if let Some(a) = address {
            let q = format!("{base}ip/{a}");
            let found = self
                .cached(format!("ri {a}"), fetcher, &q, rdap_abuse_emails)
                .await;
            push(&mut c, found, &format!("rdap-ip {a}"), &q);
        }
        if !fallback.is_empty() {
            c.found.push((fallback.to_string(), "fallback".into()));
        }
        c
    }
}

fn push(c: &mut Contacts, found: Vec<String>, source: &str, asked: &str) {
    if found.is_empty() {
        c.tried.push(asked.to_string());
    }
    for a in found {
        if !c.found.iter().any(|(x, _)| *x == a) {
            c.found.push((a, source.to_string()));
        }
    }
}

/// The chain below an entrance node that makes it one: each malicious
/// descendant with the path of edges to it.
pub fn evidence_chain(tree: &Tree, entrance: usize) -> Vec<&Node> {
    let mut out = Vec::new();
    let mut stack = vec![entrance];
    while let Some(id) = stack.pop() {
        let Some(n) = tree.nodes.get(id) else {
            continue;
        };
        if n.verdict.is_malicious() {
            out.push(n);
        }
        for c in tree.nodes.iter().rev().filter(|c| c.parent == Some(id)) {
            stack.push(c.id);
        }
    }
    out
}

/// A notice, rendered: what a mail or a letter carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedNotice {
    pub subject: String,
    pub body: String,
}

/// The notice for the entrance node `entrance` of `tree`, in `language`
/// (`ja` or `en`), with the chain below it as evidence.
pub fn render(
    language: &str,
    site: &str,
    tree: &Tree,
    entrance: usize,
    crawl_id: i64,
    contacts: &Contacts,
) -> RenderedNotice {
    let chain = evidence_chain(tree, entrance);
    let mut body = String::new();
    let ja = language == "ja";
    if ja {
        body.push_str(&format!(
            "{site} のご担当者様\n\n\
             貴サイトのページが改ざんされ、閲覧者をマルウェア配布サイトへ誘導する内容が\n\
             埋め込まれていることを確認しましたのでお知らせします。\n\
             下記は当方のクローラが {} に観測した誘導の経路です。\n\
             該当箇所を削除し、改ざんの原因（CMS やプラグインの脆弱性、漏えいした\n\
             認証情報など）を解消してください。再巡回で問題が解消したことを確認した時点で、\n\
             当方のリストから削除します。\n\n",
            tree.started_at.format("%Y-%m-%d %H:%M UTC")
        ));
    } else {
        body.push_str(&format!(
            "To the administrator of {site},\n\n\
             A page of your site has been altered: it carries injected content that\n\
             sends visitors toward a malware distribution site. Below is the chain our\n\
             crawler observed at {}. Please remove the injected content and close the\n\
             way it got in (a vulnerable CMS or plug-in, leaked credentials). When a\n\
             re-crawl finds the site clean, it is removed from our list.\n\n",
            tree.started_at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    body.push_str(if ja {
        "観測した経路:\n"
    } else {
        "Observed chain:\n"
    });
    for n in &chain {
        body.push_str(&format!(
            "  [{}] {} {}\n      {} {} status {} address {} sha256 {}\n",
            n.verdict,
            n.edge.as_str(),
            n.url,
            if ja { "種別" } else { "type" },
            n.triage.as_ref().map_or("-", |t| t.magic.as_str()),
            n.fetch.status.map_or("-".into(), |s| s.to_string()),
            n.fetch.address.as_deref().unwrap_or("-"),
            n.triage.as_ref().map_or("-", |t| t.sha256.as_str()),
        ));
        for r in &n.reasons {
            body.push_str(&format!("      - {r}\n"));
        }
    }
    body.push_str(&format!(
        "\n{} kanki crawl {crawl_id}, profile {}\n",
        if ja { "証跡:" } else { "Evidence:" },
        tree.profile
    ));
    if !contacts.found.is_empty() {
        let srcs: Vec<String> = contacts
            .found
            .iter()
            .map(|(a, s)| format!("{a} ({s})"))
            .collect();
        body.push_str(&format!(
            "{} {}\n",
            if ja {
                "連絡先の出典:"
            } else {
                "Contact found through:"
            },
            srcs.join(", ")
        ));
    }
    let subject = if ja {
        format!("【注意喚起】{site} の改ざんについて")
    } else {
        format!("Your site {site} has been compromised")
    };
    RenderedNotice { subject, body }
}

/// A notice as an RFC 5322 message (UTF-8 body, base64), for the outbox.
pub fn to_eml(
    n: &RenderedNotice,
    from: &str,
    to: Option<&str>,
    site: &str,
    crawl_id: i64,
    now: DateTime<Utc>,
) -> String {
    let host = Url::parse(site)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "site".into());
    let mut eml = String::new();
    eml.push_str(&format!("From: {from}\r\n"));
    if let Some(to) = to {
        eml.push_str(&format!("To: {to}\r\n"));
    }
    eml.push_str(&format!(
        "Subject: =?UTF-8?B?{}?=\r\n",
        BASE64.encode(n.subject.as_bytes())
    ));
    eml.push_str(&format!("Date: {}\r\n", now.to_rfc2822()));
    eml.push_str(&format!(
        "Message-ID: <crawl-{crawl_id}-{}@kanki>\r\n",
        host.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-")
    ));
    eml.push_str(&format!("X-Kanki-Crawl: {crawl_id}\r\n"));
    eml.push_str("MIME-Version: 1.0\r\n");
    eml.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
    eml.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let encoded = BASE64.encode(n.body.as_bytes());
    for line in encoded.as_bytes().chunks(76) {
        eml.push_str(std::str::from_utf8(line).unwrap_or(""));
        eml.push_str("\r\n");
    }
    eml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_txt_and_rdap_contacts() {
        let st = "# hi\nContact: mailto:security@example.jp\nContact: https://example.jp/form\nExpires: 2030-01-01T00:00:00Z\n";
        assert_eq!(security_txt_contacts(st), vec!["security@example.jp"]);
        let rdap = br#"{"entities":[{"roles":["registrant"],"entities":[{"roles":["abuse"],
            "vcardArray":["vcard",[["version",{},"text","4.0"],["email",{},"text","abuse@registrar.example"]]]}]}]}"#;
        assert_eq!(rdap_abuse_emails(rdap), vec!["abuse@registrar.example"]);
        assert!(rdap_abuse_emails(b"not json").is_empty());
        let injected = br#"{"entities":[{"roles":["abuse"],"vcardArray":["vcard",[["email",{},"text","a@b.example\r\nBcc: x@y.example"]]]}]}"#;
        assert!(rdap_abuse_emails(injected).is_empty());
    }
}
