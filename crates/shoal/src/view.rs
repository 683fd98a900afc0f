//! The fleet table: one node's `/status` drawn as text, for `shoal status`
//! and `shoal demo` (the one renderer both use).
//!
//! It reads the JSON as a [`Value`], not as the runtime's types, so a node
//! of another version still draws: a field it lacks shows as `?` and a
//! column whose field no backend has is left out. Every string from the
//! fleet is passed through [`escape_controls`] first: a name or address
//! cannot move the cursor or clear the operator's terminal.

use serde_json::Value;
use shoal_seeds::escape_controls;
use std::fmt::Write;

/// A column of the backend table: its header and how to draw one backend
/// (an element of `listeners[].backends`); `None` when the backend has no
/// such field (a node of another version).
type Column = (&'static str, fn(&Value) -> Option<String>);

/// The backend table's columns after the address and the per-node ones.
/// Adding a column is adding one line here; a column none of the
/// backends can fill is not drawn.
const BACKEND_COLUMNS: &[Column] = &[
    ("verdict", |b| {
        b["up"]
            .as_bool()
            .map(|up| if up { "up" } else { "down" }.to_owned())
    }),
    ("drain", |b| {
        b["draining"]
            .as_bool()
            .map(|d| if d { "draining" } else { "" }.to_owned())
    }),
    ("local", |b| number(&b["active_connections"])),
    ("fleet", |b| number(&b["cluster_connections"])),
    // The nodes that check it (decision 49), by name, first in hash order.
    ("checkers", |b| {
        let list = b["checkers"].as_array()?;
        Some(
            list.iter()
                .map(|c| text(c).split(" (").next().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join(","),
        )
    }),
    // The fleet-wide budget (decision 48): this node's share of the limit.
    ("budget", |b| {
        let f = &b["fleet_budget"];
        Some(format!(
            "{}/{}{}",
            number(&f["share"])?,
            number(&f["limit"])?,
            if f["cut_off"].as_bool() == Some(true) {
                " cut off"
            } else {
                ""
            }
        ))
    }),
];

fn number(v: &Value) -> Option<String> {
    v.as_u64().map(|n| n.to_string())
}

fn text(v: &Value) -> String {
    escape_controls(v.as_str().unwrap_or("?"))
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A report's age as an operator reads it.
fn age(ms: &Value) -> String {
    match ms.as_u64() {
        None => "no report".to_owned(),
        Some(ms) if ms < 10_000 => format!("{ms} ms"),
        Some(ms) => format!("{} s", ms / 1000),
    }
}

/// Rows of cells as aligned text: the first `left` columns left-aligned,
/// the others right-aligned, two spaces apart, each line indented by two.
fn grid(rows: &[Vec<String>], left: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            if c < left {
                let _ = write!(line, "  {cell:<w$}");
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One node's `/status` as the fleet table: the node, its members with
/// the age of their last report, and per listener a row per backend with
/// each node's checks and count (`up 3`, `down 0`, `?` when no report
/// carries it), then the columns of [`BACKEND_COLUMNS`].
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let node = text(&status["node"]);
    let cluster = &status["cluster"];
    let fleet = if cluster.is_object() {
        format!(
            "{}, {} live nodes",
            text(&cluster["phase"]),
            number(&cluster["live_nodes"]).unwrap_or_else(|| "?".into())
        )
    } else {
        "no fleet (this node alone)".to_owned()
    };
    let accepting = match status["accepting"].as_bool() {
        Some(true) => ", accepting clients",
        Some(false) => ", not accepting clients",
        None => "",
    };
    let _ = writeln!(out, "{node}: {fleet}{accepting}");

    let mut members = vec![vec![
        "node".to_owned(),
        "address".to_owned(),
        "last report".to_owned(),
    ]];
    members.push(vec![
        node.clone(),
        cluster
            .get("addr")
            .map(text)
            .unwrap_or_else(|| "-".to_owned()),
        "this node".to_owned(),
    ]);
    for m in array(&cluster["members"]) {
        members.push(vec![
            text(&m["name"]),
            text(&m["addr"]),
            age(&m["report_age_ms"]),
        ]);
    }
    out.push_str(&grid(&members, 2));

    for l in array(&status["listeners"]) {
        let _ = writeln!(
            out,
            "\nlistener {} on {} ({}, {} open here)",
            text(&l["name"]),
            text(&l["bind"]),
            text(&l["policy"]),
            number(&l["active_connections"]).unwrap_or_else(|| "?".into())
        );
        let backends = array(&l["backends"]);
        // Every node any backend's view names, in the order first seen
        // (this node first).
        let mut nodes: Vec<String> = Vec::new();
        for b in backends {
            for n in array(&b["nodes"]) {
                let name = text(&n["node"]);
                if !nodes.contains(&name) {
                    nodes.push(name);
                }
            }
        }
        let columns: Vec<&Column> = BACKEND_COLUMNS
            .iter()
            .filter(|(_, cell)| backends.iter().any(|b| cell(b).is_some()))
            .collect();
        let mut rows = vec![
            std::iter::once("backend".to_owned())
                .chain(nodes.iter().cloned())
                .chain(columns.iter().map(|(h, _)| (*h).to_owned()))
                .collect::<Vec<_>>(),
        ];
        for b in backends {
            let mut row = vec![text(&b["address"])];
            for name in &nodes {
                let view = array(&b["nodes"])
                    .iter()
                    .find(|n| text(&n["node"]) == *name);
                row.push(
                    match view.map(|v| (v["checks_up"].as_bool(), &v["active_connections"])) {
                        Some((Some(up), active)) => format!(
                            "{} {}",
                            if up { "up" } else { "down" },
                            number(active).unwrap_or_else(|| "?".into())
                        ),
                        _ => "?".to_owned(),
                    },
                );
            }
            for (_, cell) in &columns {
                row.push(cell(b).unwrap_or_else(|| "?".to_owned()));
            }
            rows.push(row);
        }
        out.push_str(&grid(&rows, 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Value {
        json!({
            "node": "node-1",
            "accepting": true,
            "cluster_members": 3,
            "cluster": {
                "identity": "node-1@127.0.0.1:7001#1.0",
                "addr": "127.0.0.1:7001",
                "phase": "serving",
                "live_nodes": 3,
                "members": [
                    {"name": "node-2", "addr": "127.0.0.1:7002", "report_age_ms": 120},
                    {"name": "node-3", "addr": "127.0.0.1:7003", "report_age_ms": null}
                ]
            },
            "listeners": [{
                "name": "web",
                "bind": "127.0.0.1:8080",
                "policy": "least-conn",
                "active_connections": 5,
                "backends": [
                    {"address": "10.0.0.1:80", "up": true, "checks_up": true,
                     "fleet_down_votes": 0, "active_connections": 3,
                     "remote_connections": 4, "cluster_connections": 7, "draining": false,
                     "nodes": [
                        {"node": "node-1", "checks_up": true, "active_connections": 3},
                        {"node": "node-2", "checks_up": true, "active_connections": 4},
                        {"node": "node-3", "checks_up": null, "active_connections": null}
                     ]},
                    {"address": "10.0.0.2:80", "up": false, "checks_up": true,
                     "fleet_down_votes": 1, "active_connections": 2,
                     "remote_connections": 0, "cluster_connections": 2, "draining": true,
                     "nodes": [
                        {"node": "node-1", "checks_up": true, "active_connections": 2},
                        {"node": "node-2", "checks_up": false, "active_connections": 0},
                        {"node": "node-3", "checks_up": null, "active_connections": null}
                     ]}
                ]
            }]
        })
    }

    #[test]
    fn draws_members_and_each_nodes_view_of_each_backend() {
        let table = render(&fleet());
        let expected = "\
node-1: serving, 3 live nodes, accepting clients
  node    address         last report
  node-1  127.0.0.1:7001    this node
  node-2  127.0.0.1:7002       120 ms
  node-3  127.0.0.1:7003    no report

listener web on 127.0.0.1:8080 (least-conn, 5 open here)
  backend      node-1  node-2  node-3  verdict     drain  local  fleet
  10.0.0.1:80    up 3    up 4       ?       up                3      7
  10.0.0.2:80    up 2  down 0       ?     down  draining      2      2
";
        assert_eq!(table, expected, "\n{table}");
    }

    #[test]
    fn a_field_no_backend_has_drops_its_column_and_a_missing_one_shows_unknown() {
        let mut s = fleet();
        for b in s["listeners"][0]["backends"].as_array_mut().unwrap() {
            b.as_object_mut().unwrap().remove("cluster_connections");
        }
        s["listeners"][0]["backends"][0]
            .as_object_mut()
            .unwrap()
            .remove("draining");
        let table = render(&s);
        let header = table.lines().find(|l| l.contains("backend")).unwrap();
        assert!(!header.contains("fleet"), "{table}");
        assert!(header.contains("drain"), "{table}");
        let first = table.lines().find(|l| l.contains("10.0.0.1:80")).unwrap();
        assert_eq!(
            first.split_whitespace().collect::<Vec<_>>(),
            ["10.0.0.1:80", "up", "3", "up", "4", "?", "up", "?", "3"],
            "{table}"
        );
    }

    #[test]
    fn a_budget_shows_this_nodes_share_of_the_limit() {
        let mut s = fleet();
        s["listeners"][0]["backends"][0]["fleet_budget"] =
            json!({"limit": 30, "share": 12, "cut_off": false, "refused": 0});
        s["listeners"][0]["backends"][1]["fleet_budget"] =
            json!({"limit": 30, "share": 10, "cut_off": true, "refused": 4});
        let table = render(&s);
        let header = table.lines().find(|l| l.contains("backend")).unwrap();
        assert!(header.ends_with("budget"), "{table}");
        let row = |b: &str| table.lines().find(|l| l.contains(b)).unwrap().to_owned();
        assert!(row("10.0.0.1:80").ends_with(" 12/30"), "{table}");
        assert!(row("10.0.0.2:80").ends_with(" 10/30 cut off"), "{table}");
    }

    #[test]
    fn the_checkers_of_a_backend_are_named() {
        let mut s = fleet();
        s["listeners"][0]["backends"][0]["checkers"] =
            json!(["node-2 (127.0.0.1:7002)", "node-1 (127.0.0.1:7001)"]);
        let table = render(&s);
        let header = table.lines().find(|l| l.contains("backend")).unwrap();
        assert!(header.ends_with("checkers"), "{table}");
        let row = table.lines().find(|l| l.contains("10.0.0.1:80")).unwrap();
        assert!(row.ends_with(" node-2,node-1"), "{table}");
    }

    #[test]
    fn control_characters_from_the_fleet_are_escaped() {
        let mut s = fleet();
        s["node"] = json!("evil\u{1b}[2J");
        s["listeners"][0]["backends"][0]["address"] = json!("a\u{1b}]0;x\u{7}");
        let table = render(&s);
        assert!(!table.contains('\u{1b}'), "{table:?}");
        assert!(!table.contains('\u{7}'), "{table:?}");
        assert!(table.contains("evil\\u{1b}[2J"), "{table}");
    }

    #[test]
    fn a_node_without_a_fleet_draws_itself_alone() {
        let mut s = fleet();
        s["cluster"] = Value::Null;
        let table = render(&s);
        assert!(
            table.starts_with("node-1: no fleet (this node alone)"),
            "{table}"
        );
        let me = table.lines().nth(2).unwrap();
        assert_eq!(
            me.split_whitespace().collect::<Vec<_>>(),
            ["node-1", "-", "this", "node"],
            "{table}"
        );
    }
}
