//! A verdict per node, with its reasons, from what triage found in the node
//! and what lies below it in the tree.

use serde::{Deserialize, Serialize};

use crate::Node;
use crate::extract::EdgeKind;
use crate::triage::Magic;

/// What a node of a crawl tree is, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Serves malware (マルウェア配布サイト).
    Distribution,
    /// Serves an exploit, or loads a payload through a plug-in (攻撃サイト).
    Exploit,
    /// Sends visitors on toward an exploit or distribution site.
    Redirector,
    /// A real page carrying injected content that leads to one (入口サイト).
    Entrance,
    /// Nothing bad found.
    Clean,
    /// Not fetched, or not completely: nothing can be said.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Distribution => "distribution",
            Verdict::Exploit => "exploit",
            Verdict::Redirector => "redirector",
            Verdict::Entrance => "entrance",
            Verdict::Clean => "clean",
            Verdict::Unknown => "unknown",
        }
    }

    /// Whether the node takes part in the attack chain.
    pub fn is_malicious(self) -> bool {
        matches!(
            self,
            Verdict::Distribution | Verdict::Exploit | Verdict::Redirector | Verdict::Entrance
        )
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the node itself is, from its own body.
fn own(node: &Node) -> Option<(Verdict, Vec<String>)> {
    let t = node.triage.as_ref()?;
    let mut reasons = Vec::new();
    let mut v = None;
    let mut worst = |x: Verdict, why: String, reasons: &mut Vec<String>| {
        reasons.push(why);
        v = Some(v.map_or(x, |y: Verdict| y.min(x)));
    };
    if t.known_bad {
        worst(
            Verdict::Distribution,
            format!("SHA-256 {} is on a known-bad list", t.sha256),
            &mut reasons,
        );
    }
    if t.magic.is_executable_payload() {
        worst(
            Verdict::Distribution,
            format!("serves a {} payload", t.magic.as_str()),
            &mut reasons,
        );
    }
    for i in &t.inside {
        let x = if i.ends_with(Magic::PdfJavascript.as_str()) || i.ends_with(Magic::Flash.as_str())
        {
            Verdict::Exploit
        } else {
            Verdict::Distribution
        };
        worst(x, format!("archive holds {i}"), &mut reasons);
    }
    if t.magic.is_exploit_carrier() {
        worst(
            Verdict::Exploit,
            format!("serves a {} document", t.magic.as_str()),
            &mut reasons,
        );
    }
    for rule in &t.yara {
        let x = if t.magic.is_executable_payload() || t.magic.is_archive() {
            Verdict::Distribution
        } else {
            Verdict::Exploit
        };
        worst(x, format!("YARA rule {rule} matched"), &mut reasons);
    }
    v.map(|v| (v, reasons))
}

fn edge_words(node: &Node) -> String {
    if node.edge_flags.is_empty() {
        node.edge.as_str().to_string()
    } else {
        format!("{} ({})", node.edge.as_str(), node.edge_flags.join(", "))
    }
}

/// Sets every node's verdict and reasons. Children come after their
/// parents in `nodes`, so one pass from the end sees a node's children
/// judged before the node.
pub fn judge(nodes: &mut [Node]) {
    for i in (0..nodes.len()).rev() {
        let (mut verdict, mut reasons) = match own(&nodes[i]) {
            Some((v, r)) => (Some(v), r),
            None => (None, Vec::new()),
        };
        let bad_children: Vec<(usize, Verdict)> = nodes
            .iter()
            .enumerate()
            .skip(i + 1)
            .filter(|(_, c)| c.parent == Some(i) && c.verdict.is_malicious())
            .map(|(j, c)| (j, c.verdict))
            .collect();
        for (j, cv) in &bad_children {
            let c = &nodes[*j];
            reasons.push(format!("leads to {} ({cv}) by {}", c.url, edge_words(c)));
        }
        if verdict.is_none() && !bad_children.is_empty() {
            let n = &nodes[i];
            let plugin_payload = bad_children.iter().any(|(j, cv)| {
                *cv == Verdict::Distribution
                    && matches!(
                        nodes[*j].edge,
                        EdgeKind::Applet | EdgeKind::Object | EdgeKind::Embed
                    )
            });
            let is_page = n.fetch.status.is_some_and(|s| (200..300).contains(&s))
                && n.triage.as_ref().is_some_and(|t| t.magic == Magic::Html);
            verdict = Some(if plugin_payload {
                Verdict::Exploit
            } else if n.parent.is_none() && is_page {
                Verdict::Entrance
            } else {
                Verdict::Redirector
            });
        }
        let n = &mut nodes[i];
        n.verdict = match verdict {
            Some(v) => v,
            None if n.fetch.status.is_some() && n.fetch.stopped.is_none() => Verdict::Clean,
            None => {
                if let Some(s) = &n.fetch.stopped {
                    reasons.push(s.clone());
                }
                Verdict::Unknown
            }
        };
        n.reasons = reasons;
    }
}
