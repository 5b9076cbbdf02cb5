//! The configuration of the drill ISP's `kanki serve`: every listener on
//! a free loopback port, every schedule scaled to the lab's speed. This is
//! the one place the lab's serve configuration is written.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// The loopback ports of one lab run (chosen afresh at every start).
#[derive(Clone, Debug)]
pub struct LabPorts {
    /// The operator listener: API, console, `/metrics`.
    pub api: SocketAddr,
    /// The countermeasure site subscribers' notices link to.
    pub site: SocketAddr,
    /// The DNS front, UDP and TCP.
    pub dns: SocketAddr,
    /// The warning page.
    pub warning: SocketAddr,
    /// RADIUS accounting.
    pub radius: SocketAddr,
    /// The RPZ primary.
    pub rpz: SocketAddr,
    /// The lab's resolver, behind the DNS front.
    pub upstream: SocketAddr,
    /// The lab's SMTP sink, where notices go.
    pub smtp: SocketAddr,
    /// The lab's feed server.
    pub feed: SocketAddr,
}

impl LabPorts {
    /// Nine distinct free ports: each socket is held until all are picked,
    /// or the system may hand the same free port out twice (and serve
    /// then fails to bind its second listener).
    pub fn pick() -> anyhow::Result<LabPorts> {
        let mut held = Held::default();
        Ok(LabPorts {
            api: held.tcp()?,
            site: held.tcp()?,
            dns: held.both()?,
            warning: held.tcp()?,
            radius: held.udp()?,
            rpz: held.both()?,
            upstream: held.udp()?,
            smtp: held.tcp()?,
            feed: held.tcp()?,
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Where notices send subscribers: the countermeasure site's own
    /// listener.
    pub fn countermeasures_url(&self) -> String {
        format!("http://{}/countermeasures", self.site)
    }
}

/// The sockets bound while ports are picked, closed together when it is
/// dropped.
#[derive(Default)]
struct Held {
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
}

impl Held {
    fn tcp(&mut self) -> anyhow::Result<SocketAddr> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        self.tcp.push(l);
        Ok(addr)
    }

    fn udp(&mut self) -> anyhow::Result<SocketAddr> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        let addr = s.local_addr()?;
        self.udp.push(s);
        Ok(addr)
    }

    /// A port free for both UDP and TCP.
    fn both(&mut self) -> anyhow::Result<SocketAddr> {
        for _ in 0..100 {
            let udp = UdpSocket::bind("127.0.0.1:0")?;
            let addr = udp.local_addr()?;
            if let Ok(tcp) = TcpListener::bind(addr) {
                self.udp.push(udp);
                self.tcp.push(tcp);
                return Ok(addr);
            }
        }
        anyhow::bail!("no loopback port free for both UDP and TCP")
    }
}

/// `minutes` of the synthetic day in real time at `speed`, in whole
/// seconds (at least one: the removal schedules count whole seconds).
fn scaled(minutes: u32, speed: f64) -> String {
    let secs = (f64::from(minutes) * 60.0 / speed).round().max(1.0);
    format!("{}s", secs as u64)
}

/// `minutes` of the synthetic day at `speed`, for the fast schedules
/// (milliseconds, at least `floor`).
pub fn scaled_ms(minutes: f64, speed: f64, floor: Duration) -> Duration {
    Duration::from_secs_f64(minutes * 60.0 / speed).max(floor)
}

/// Where the crawler lab is and its seed file, for serve's `[crawler]`.
#[derive(Clone, Debug)]
pub struct CrawlSeeds<'a> {
    pub lab: SocketAddr,
    pub file: &'a Path,
}

/// The TOML of the lab's `kanki serve`.
pub fn serve_toml(
    data_dir: &Path,
    p: &LabPorts,
    crawl: &CrawlSeeds<'_>,
    radius_secret: &str,
    speed: f64,
) -> String {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let fast = |minutes: f64| ms(scaled_ms(minutes, speed, Duration::from_millis(200)));
    format!(
        r#"# Written by `kanki lab` at every start (the ports change); edits are lost.
data_dir = "{data}"

[api]
listen = "{api}"

[policy]
refresh_every = "1s"

[indicators]
expire_every = "1m"

[[feeds]]
name = "lab-feed"
format = "plain"
url = "http://{feed}/malware-sites.txt"
every = "{feed_every}"
category = "malware-distribution"

[[rpz.zones]]
name = "malware.rpz.lab.kanki"

[rpz]
listen = "{rpz}"

[directory]
refresh_every = "500ms"

[radius]
listen = "{radius}"

[[radius.nas]]
address = "127.0.0.1"
secret = "{radius_secret}"

[dns]
listen = ["{dns}"]
upstreams = ["{upstream}"]
clients = ["127.0.0.0/8"]
warning_v4 = "127.0.0.1"
rate_limit = 0

[warning]
listen = "{warning}"
hits_flush_every = "1s"
reports_per_hour = 1000

[removal]
quiet_after = "{quiet}"
resolve_after = "{resolve}"

[notices]
min_interval = "{min_interval}"
escalate_after = 3
send_every = "{send_every}"
retry_backoff = "{retry}"

[countermeasure_site]
listen = "{site_listen}"
public_url = "{site}"

[smtp]
server = "{smtp}"
from = "abuse@isp.lab.example"
tls = "none"
timeout = "10s"
{crawler}"#,
        data = toml_path(data_dir),
        api = p.api,
        feed = p.feed,
        // serve refuses a feed schedule under 10 s.
        feed_every = ms(scaled_ms(60.0, speed, Duration::from_secs(10))),
        rpz = p.rpz,
        radius = p.radius,
        dns = p.dns,
        upstream = p.upstream,
        warning = p.warning,
        quiet = scaled(60, speed),
        resolve = scaled(120, speed),
        min_interval = scaled(180, speed),
        site = p.countermeasures_url(),
        site_listen = p.site,
        send_every = fast(2.0),
        retry = scaled(10, speed),
        smtp = p.smtp,
        // Seeds every six hours of the day, listed sites every hour.
        crawler = super::crawl::serve_toml(
            crawl.lab,
            crawl.file,
            &scaled(360, speed),
            &scaled(60, speed),
        ),
    )
}

/// A path as a TOML basic string's content.
pub fn toml_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_configuration_is_valid_and_scaled() {
        let dir = tempfile::tempdir().unwrap();
        let p = LabPorts::pick().unwrap();
        let seeds = dir.path().join("crawl-seeds.txt");
        let crawl = CrawlSeeds {
            lab: "127.0.0.1:8080".parse().unwrap(),
            file: &seeds,
        };
        let text = serve_toml(dir.path(), &p, &crawl, "s3cret", 60.0);
        let file = dir.path().join("kanki.toml");
        std::fs::write(&file, &text).unwrap();
        let c = kanki_config::Config::load(&file).unwrap();
        assert_eq!(c.api.listen, p.api);
        assert_eq!(c.dns.listen, vec![p.dns]);
        assert_eq!(c.radius.listen, Some(p.radius));
        // An hour of the day is a minute at speed 60.
        assert_eq!(c.removal.quiet_after.as_secs(), 60);
        assert_eq!(c.feeds[0].every.0, Duration::from_secs(60));
        assert_eq!(c.countermeasure_site.listen, Some(p.site));
        assert_eq!(
            c.countermeasure_site.public_url,
            Some(p.countermeasures_url())
        );
        // The crawler lab: its names past the guard, crawled every six
        // hours of the day, its sites' contacts noticed by mail.
        assert_eq!(c.crawler.schedule.seeds, vec![seeds.clone()]);
        assert_eq!(c.crawler.schedule.every.0, Duration::from_secs(360));
        assert!(c.crawler.notices.enabled);
        assert_eq!(c.crawler.hosts.len(), 5);
    }
}
