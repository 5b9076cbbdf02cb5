//! The tree and verdicts as text for people (`kanki crawl` without `--json`).

use std::fmt::Write;

use crate::{CrawlReport, Node, Tree};

/// The report as an indented tree, one line per node and its reasons below.
pub fn render_text(r: &CrawlReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}  verdict: {}", r.seed, r.verdict);
    for t in &r.trees {
        tree(&mut s, t);
    }
    for c in &r.cloaking {
        let _ = writeln!(
            s,
            "  cloaking: {} saw {}, {} saw {}",
            c.profiles[0], c.verdicts[0], c.profiles[1], c.verdicts[1]
        );
        for u in &c.only_first {
            let _ = writeln!(s, "    only under {}: {u}", c.profiles[0]);
        }
        for u in &c.only_second {
            let _ = writeln!(s, "    only under {}: {u}", c.profiles[1]);
        }
    }
    s
}

fn tree(s: &mut String, t: &Tree) {
    let _ = writeln!(
        s,
        "  profile {}: {} ({} nodes, {} ms){}",
        t.profile,
        t.verdict,
        t.nodes.len(),
        t.elapsed_ms,
        t.stopped
            .as_deref()
            .map(|x| format!(", stopped: {x}"))
            .unwrap_or_default()
    );
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); t.nodes.len()];
    for n in &t.nodes {
        if let Some(p) = n.parent {
            children[p].push(n.id);
        }
    }
    let mut stack = vec![(0usize, 0usize)];
    while let Some((id, level)) = stack.pop() {
        let Some(n) = t.nodes.get(id) else { break };
        node(s, n, level);
        for c in children[id].iter().rev() {
            stack.push((*c, level + 1));
        }
    }
}

fn node(s: &mut String, n: &Node, level: usize) {
    let pad = "  ".repeat(level + 2);
    let edge = if n.edge_flags.is_empty() {
        n.edge.as_str().to_string()
    } else {
        format!("{}[{}]", n.edge.as_str(), n.edge_flags.join(","))
    };
    let status = n
        .fetch
        .status
        .map_or_else(|| "---".to_string(), |x| x.to_string());
    let what = n.triage.as_ref().map_or(String::new(), |t| {
        format!(
            " {} {}B sha256:{}",
            t.magic.as_str(),
            t.size,
            &t.sha256[..16]
        )
    });
    let addr = n
        .fetch
        .address
        .as_deref()
        .map(|a| format!(" @{a}"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "{pad}#{} {edge} {} {status}{addr}{what} => {}",
        n.id, n.url, n.verdict
    );
    for r in &n.reasons {
        let _ = writeln!(s, "{pad}    - {r}");
    }
    if n.verdict != crate::Verdict::Unknown
        && let Some(x) = &n.fetch.stopped
    {
        let _ = writeln!(s, "{pad}    - stopped: {x}");
    }
}
