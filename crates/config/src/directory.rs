//! `[directory]`, `[audit]` and `[radius]`: the subscriber directory, the
//! audit log and the RADIUS accounting server.

use serde::{Deserialize, Serialize};

use crate::HumanDuration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// How far the clocks of the network's records and of the events being
    /// attributed may disagree: a moment this close to a session's start or
    /// end is reported as near a boundary, and both neighbours are listed.
    pub clock_skew: HumanDuration,
    /// Bindings that ended longer ago than this are purged.
    pub bindings_retention: HumanDuration,
    /// How often `kanki serve` looks for directory changes made by other
    /// processes (consent, subscribers, bindings) and reloads.
    pub refresh_every: HumanDuration,
    /// The binding index is rebuilt at most this often while bindings keep
    /// changing (RADIUS accounting changes them all the time).
    pub rebuild_every: HumanDuration,
    /// The most bindings changed since the last rebuild that `kanki serve`
    /// lays over the index (each costs about 200 bytes); past this (a bulk
    /// import) it rebuilds at once, and changes reach the front with that
    /// rebuild rather than within `refresh_every`.
    pub overlay_most: usize,
    /// How often `kanki serve` runs the retention purge.
    pub purge_every: HumanDuration,
    /// Lease and accounting files `kanki serve` follows as they grow.
    pub follow: Vec<FollowConfig>,
}

/// One file `kanki serve` follows (`[[directory.follow]]`): its records are
/// stored as they are completed, from where the last run stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowConfig {
    /// `kea` (a Kea memfile lease file, v4 or v6), `dhcpd` (ISC dhcpd's
    /// `dhcpd.leases`) or `detail` (a FreeRADIUS detail file).
    pub format: FollowFormat,
    pub path: std::path::PathBuf,
    /// How often the file is looked at.
    #[serde(default = "follow_every")]
    pub every: HumanDuration,
}

fn follow_every() -> HumanDuration {
    HumanDuration::millis(250)
}

/// The formats a followed file may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FollowFormat {
    Kea,
    Dhcpd,
    Detail,
}

impl FollowFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowFormat::Kea => "kea",
            FollowFormat::Dhcpd => "dhcpd",
            FollowFormat::Detail => "detail",
        }
    }
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            clock_skew: HumanDuration::secs(120),
            bindings_retention: HumanDuration::secs(400 * 86400),
            refresh_every: HumanDuration::millis(250),
            rebuild_every: HumanDuration::secs(10),
            overlay_most: 2_000_000,
            purge_every: HumanDuration::secs(86400),
            follow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit records older than this are purged (the purge is recorded).
    pub retention: HumanDuration,
    /// The Ed25519 key (PKCS#8, DER or PEM: `kanki audit keygen`) that
    /// signs checkpoints of the chain's head. Unset: no checkpoints.
    pub checkpoint_key_file: Option<std::path::PathBuf>,
    /// How often `kanki serve` writes a checkpoint.
    pub checkpoint_every: HumanDuration,
    /// Where checkpoints go: a file path (one line appended each time), or
    /// `"syslog"` (the local syslog socket, facility auth, for shipping
    /// elsewhere).
    pub checkpoint_to: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention: HumanDuration::secs(3 * 365 * 86400),
            checkpoint_key_file: None,
            checkpoint_every: HumanDuration::secs(3600),
            checkpoint_to: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusConfig {
    /// UDP address of the RADIUS accounting server; unset: no server.
    pub listen: Option<std::net::SocketAddr>,
    /// The NASes allowed to send accounting, each with its shared secret.
    pub nas: Vec<NasConfig>,
    /// A record whose Event-Timestamp is older than this is refused (a
    /// replayed capture, or a NAS clock far off); records of a session are
    /// checked against its newest stored record for this long.
    pub max_record_age: HumanDuration,
    /// Refuse records without Event-Timestamp (they cannot be dated, so a
    /// replayed Accounting-On/Off without one cannot be recognized).
    pub require_event_timestamp: bool,
    /// Sessions kept for replay detection, at most.
    pub tracked_sessions: usize,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            listen: None,
            nas: Vec::new(),
            max_record_age: HumanDuration::secs(86_400),
            require_event_timestamp: false,
            tracked_sessions: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NasConfig {
    /// An address or a CIDR block of NAS addresses.
    pub address: String,
    #[serde(default)]
    pub secret: String,
    /// NAS-IP-Address / NAS-IPv6-Address values (addresses or networks)
    /// this NAS may send besides its own source address.
    #[serde(default)]
    pub nas_ip_addresses: Vec<String>,
    /// NAS-Identifier values this NAS may send.
    #[serde(default)]
    pub nas_identifiers: Vec<String>,
    /// A file holding the shared secret instead (kept out of the
    /// configuration, readable by kanki alone).
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
}
