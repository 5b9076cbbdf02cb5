//! The drill ISP's crawler lab: the web of attack chains the crawler
//! library's own lab serves (`kanki_crawler::lab`: a compromised shop with
//! an injected script, a chain of redirects, an exploit landing page and a
//! fake PE; cloaking by User-Agent and by Referer; an applet), reached
//! under names of its own that `[crawler.hosts]` maps to loopback.
//!
//! serve crawls the seeds every six hours of the synthetic day, lists what
//! the chains lead to, and notices the compromised shop's registrar (found
//! through the lab's RDAP answers) by mail to the lab's mail server. At
//! [`CLEAN_UP_MINUTE`] the shop's administrator removes the injected script
//! and the payload is taken down; the re-checks then find the shop clean
//! and delist it.

use std::net::SocketAddr;
use std::path::Path;

use kanki_crawler::lab::LabServer;

/// The crawler lab's sites, each a name of the lab's web server: the
/// crawler resolves them through `[crawler.hosts]`, so the lab needs no
/// DNS of its own. The lab's RDAP answers for one-label `.lab` names.
const SITES: &[(&str, &str)] = &[
    // A compromised shop: injected script → hidden iframe → redirects →
    // exploit landing → the payload.
    ("shop.lab", "/entrance.html"),
    // An app site that hands Android visitors a fake APK.
    ("apps.lab", "/mobile.html"),
    // A page that sends visitors coming from a search engine to the PE.
    ("search.lab", "/search.html"),
    // An old applet exploit.
    ("java.lab", "/applet.html"),
    // A site with nothing bad, for comparison.
    ("news.lab", "/clean.html"),
];

/// Minute of the lab's first day (14:00) at which the compromised shop is
/// cleaned up; it stays clean after.
pub const CLEAN_UP_MINUTE: u32 = 14 * 60;

/// The crawl lab's web server, started before serve so that its port can
/// go into serve's configuration.
pub struct CrawlLab {
    server: LabServer,
}

impl CrawlLab {
    pub fn start() -> anyhow::Result<CrawlLab> {
        Ok(CrawlLab {
            server: LabServer::start(std::time::Duration::ZERO)?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The seed URLs, one a line, as the seed file serve reads.
    pub fn seeds(&self) -> String {
        let port = self.server.addr.port();
        SITES
            .iter()
            .map(|(name, path)| format!("http://{name}:{port}{path}\n"))
            .collect()
    }

    /// The entrance site's administrator removes the injected script and
    /// the payload is taken down (idempotent).
    pub fn clean_up(&self) {
        self.server.clean_up();
    }

    /// The first seed, for the banner.
    pub fn entrance_url(&self) -> String {
        let (name, path) = SITES[0];
        format!("http://{name}:{}{path}", self.server.addr.port())
    }
}

/// The `[crawler]` part of serve's configuration: the lab's loopback
/// addresses allowed past the SSRF guard, its names mapped to them, the
/// seeds crawled every six hours of the day, listed sites re-checked every
/// hour, and notices to compromised sites' contacts sent by mail.
pub fn serve_toml(lab: SocketAddr, seeds: &Path, crawl_every: &str, recheck_every: &str) -> String {
    let hosts: String = SITES
        .iter()
        .map(|(name, _)| format!("\"{name}\" = \"{}\"\n", lab.ip()))
        .collect();
    format!(
        r#"
[crawler]
lab_allow = ["127.0.0.0/8"]

[crawler.hosts]
{hosts}
[crawler.schedule]
seeds = ["{seeds}"]
every = "{crawl_every}"
recheck_every = "{recheck_every}"

[crawler.notices]
enabled = true
rdap_base = "http://{lab}/rdap/"
delivery = "smtp"
"#,
        seeds = super::config::toml_path(seeds),
    )
}
