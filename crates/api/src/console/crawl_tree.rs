//! The evidence chain of an indicator: the crawl tree that reached it,
//! drawn as a graph of typed edges (seed → redirect → exploit →
//! distribution), as an SVG laid out as an indented tree (each node a row
//! under its parent, the edge's kind on the connector), with the same
//! tree as a list for screen readers. Drawn from the crawl's stored report
//! (JSON), so the console needs none of the crawler's types.

use kanki_html::esc;
use serde_json::Value;

use super::Console;

/// The most nodes drawn (a tree can hold thousands of script and frame
/// edges; the rest are counted).
pub const NODES_DRAWN: usize = 150;

/// One node as drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeNode {
    pub id: usize,
    pub parent: Option<usize>,
    pub edge: String,
    pub url: String,
    pub verdict: String,
}

/// The nodes of the report's tree under `profile`, in their order
/// (a parent before its children).
pub fn nodes_of(report: &Value, profile: &str) -> Vec<TreeNode> {
    let Some(tree) = report["trees"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["profile"] == profile))
    else {
        return Vec::new();
    };
    tree["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| {
                    Some(TreeNode {
                        id: n["id"].as_u64()? as usize,
                        parent: n["parent"].as_u64().map(|p| p as usize),
                        edge: n["edge"].as_str().unwrap_or("?").to_string(),
                        url: n["url"].as_str().unwrap_or("").to_string(),
                        verdict: n["verdict"].as_str().unwrap_or("unknown").to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The nodes in drawing order, depth first from the roots, each with its
/// level; at most [`NODES_DRAWN`].
fn rows(nodes: &[TreeNode]) -> Vec<(usize, &TreeNode)> {
    use std::collections::{HashMap, HashSet};
    let ids: HashSet<usize> = nodes.iter().map(|n| n.id).collect();
    // A root: no parent, a parent not in the tree, or itself.
    let is_root = |n: &TreeNode| n.parent.is_none_or(|p| p == n.id || !ids.contains(&p));
    let mut children: HashMap<usize, Vec<&TreeNode>> = HashMap::new();
    for n in nodes.iter().filter(|n| !is_root(n)) {
        children
            .entry(n.parent.unwrap_or(n.id))
            .or_default()
            .push(n);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(usize, &TreeNode)> = nodes
        .iter()
        .filter(|n| is_root(n))
        .rev()
        .map(|n| (0, n))
        .collect();
    while let Some((level, n)) = stack.pop() {
        if out.len() == NODES_DRAWN {
            break;
        }
        // Each node once, whatever the report says.
        if !seen.insert(n.id) {
            continue;
        }
        out.push((level, n));
        for child in children.get(&n.id).into_iter().flatten().rev() {
            stack.push((level + 1, child));
        }
    }
    out
}

fn colour(verdict: &str) -> &'static str {
    match verdict {
        "distribution" => "#b00020",
        "exploit" => "#c0392b",
        "redirector" => "#9a6b00",
        "entrance" => "#1f5fa8",
        "clean" => "#2e7d32",
        _ => "#666666",
    }
}

fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

/// The tree as an SVG, the node whose URL is `mark` outlined.
pub fn svg(nodes: &[TreeNode], mark: &str) -> String {
    let rows = rows(nodes);
    let (row_h, indent, width) = (34.0, 26.0, 900.0);
    let height = rows.len() as f64 * row_h + 12.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"crawl-tree\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-labelledby=\"crawl-tree-title\" font-family=\"sans-serif\" font-size=\"12\"><title id=\"crawl-tree-title\">crawl tree</title>"
    );
    let mut at: std::collections::HashMap<usize, (f64, f64)> = std::collections::HashMap::new();
    for (i, (level, n)) in rows.iter().enumerate() {
        let x = 8.0 + *level as f64 * indent;
        let y = 6.0 + i as f64 * row_h;
        if let Some((px, py)) = n.parent.and_then(|p| at.get(&p)) {
            out.push_str(&format!(
                "<path d=\"M{:.1} {:.1} V{:.1} H{x:.1}\" fill=\"none\" stroke=\"#8a94a0\"/>",
                px + 8.0,
                py + 24.0,
                y + 12.0
            ));
        }
        at.insert(n.id, (x, y));
        let marked = n.url == mark;
        out.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"24\" rx=\"4\" fill=\"#fff\" stroke=\"{}\" stroke-width=\"{}\"/>\
<text x=\"{:.1}\" y=\"{:.1}\"><tspan font-weight=\"bold\" fill=\"{}\">{}</tspan> <tspan fill=\"#555\">[{}]</tspan> {}</text>",
            width - x - 8.0,
            if marked { "#b00020" } else { colour(&n.verdict) },
            if marked { 3 } else { 1 },
            x + 6.0,
            y + 16.0,
            colour(&n.verdict),
            esc(&n.verdict),
            esc(&n.edge),
            esc(&clip(&n.url, 90 - (level * 3).min(60))),
        ));
    }
    out.push_str("</svg>");
    out
}

/// The tree as nested lists, for screen readers and text browsers.
pub fn list(nodes: &[TreeNode], mark: &str) -> String {
    let rows = rows(nodes);
    let mut out = String::from("<ol class=\"crawl-tree-list\">");
    let mut open = 0;
    for (level, n) in &rows {
        while open < *level {
            out.push_str("<ol>");
            open += 1;
        }
        while open > *level {
            out.push_str("</ol>");
            open -= 1;
        }
        out.push_str(&format!(
            "<li{}>{} [{}] <code>{}</code></li>",
            if n.url == mark {
                " class=\"marked\""
            } else {
                ""
            },
            esc(&n.verdict),
            esc(&n.edge),
            esc(&clip(&n.url, 300)),
        ));
    }
    while open > 0 {
        out.push_str("</ol>");
        open -= 1;
    }
    out.push_str("</ol>");
    out
}

/// The evidence-chain section of an indicator's page, from the newest
/// crawl that reached its URL (`crawl`: its id, profile and report).
pub fn section(c: &Console, crawl: Option<(i64, String, Value)>, mark: &str) -> String {
    let title = c.tr("Evidence chain (crawl tree)", "証拠の連鎖（クロールの木）");
    let Some((id, profile, report)) = crawl else {
        return format!(
            "<section id=\"crawl-tree\"><h2>{title}</h2><p>{}</p></section>",
            c.tr(
                "No crawl reached this indicator.",
                "この指標に到達したクロールはありません。"
            )
        );
    };
    let nodes = nodes_of(&report, &profile);
    let more = nodes.len().saturating_sub(NODES_DRAWN);
    format!(
        "<section id=\"crawl-tree\"><h2>{title}</h2><p>{} #{id} · {} <code>{}</code>{}</p><div class=\"crawl-graph\">{}</div><details><summary>{}</summary>{}</details></section>",
        c.tr("Crawl", "クロール"),
        c.tr("profile", "プロファイル"),
        esc(&profile),
        if more > 0 {
            format!(" · {more} {}", c.tr("more nodes not drawn", "ノードは省略"))
        } else {
            String::new()
        },
        svg(&nodes, mark),
        c.tr("The tree as a list", "木をリストで表示"),
        list(&nodes, mark),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_drawn_parent_first_with_typed_edges_and_hostile_urls_inert() {
        let report = serde_json::json!({"trees": [
            {"profile": "other", "nodes": []},
            {"profile": "windows-chrome-ja", "nodes": [
                {"id": 0, "edge": "seed", "url": "http://entrance.example/", "verdict": "entrance"},
                {"id": 1, "parent": 0, "edge": "iframe", "url": "http://redir.example/<script>", "verdict": "redirector"},
                {"id": 2, "parent": 1, "edge": "http-redirect", "url": "http://ek.example/land", "verdict": "exploit"},
                {"id": 3, "parent": 2, "edge": "object", "url": "http://dl.example/a.exe", "verdict": "distribution"},
                {"id": 4, "parent": 0, "edge": "script", "url": "http://cdn.example/x.js", "verdict": "clean"},
            ]},
        ]});
        let nodes = nodes_of(&report, "windows-chrome-ja");
        assert_eq!(nodes.len(), 5);
        let order: Vec<usize> = rows(&nodes).iter().map(|(_, n)| n.id).collect();
        assert_eq!(
            order,
            [0, 1, 2, 3, 4],
            "depth first, children under their parent"
        );
        let levels: Vec<usize> = rows(&nodes).iter().map(|(l, _)| *l).collect();
        assert_eq!(levels, [0, 1, 2, 3, 1]);
        let drawn = svg(&nodes, "http://dl.example/a.exe");
        assert!(drawn.contains("[http-redirect]") && drawn.contains("[object]"));
        assert!(!drawn.contains("<script>") && drawn.contains("&lt;script&gt;"));
        assert_eq!(
            drawn.matches("stroke-width=\"3\"").count(),
            1,
            "the indicator marked"
        );
        let listed = list(&nodes, "http://dl.example/a.exe");
        assert_eq!(listed.matches("<li").count(), 5);
        assert_eq!(
            listed.matches("<ol").count(),
            listed.matches("</ol>").count()
        );
        assert!(nodes_of(&report, "none").is_empty());
    }

    #[test]
    fn a_huge_or_looping_tree_is_bounded() {
        let nodes: Vec<TreeNode> = (0..10_000)
            .map(|i| TreeNode {
                id: i,
                parent: if i == 0 { Some(0) } else { Some(i - 1) },
                edge: "iframe".into(),
                url: format!("http://x.example/{i}"),
                verdict: "unknown".into(),
            })
            .collect();
        assert_eq!(rows(&nodes).len(), NODES_DRAWN);
    }
}
