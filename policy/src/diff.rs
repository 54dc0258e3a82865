//! How two policies differ: edges and clients added, removed or changed (field by
//! field), the backbone's AS number and the preferences, and what that does to each
//! edge's part.

use crate::model::Policy;
use crate::part::{changes, part};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The fields of every edge and client, by name, with edges named (not numbered).
fn entities(p: &Policy) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let edges = p
        .edges
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            )
        })
        .collect();
    let clients = p
        .clients
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            if let Some(list) = v.get_mut("placement").and_then(Value::as_array_mut) {
                for (pl, place) in list.iter_mut().zip(&c.placement) {
                    pl["edge"] = json!(p.edges[place.edge].name);
                }
            }
            (c.name.clone(), v)
        })
        .collect();
    (edges, clients)
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// `~ what: field old -> new` for each field that differs.
fn fields(what: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    let empty = Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (x, y) = (
            a.get(k).unwrap_or(&Value::Null),
            b.get(k).unwrap_or(&Value::Null),
        );
        if x != y {
            out.push(format!("~ {what}: {k} {} -> {}", show(x), show(y)));
        }
    }
}

fn section(
    kind: &str,
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
    out: &mut Vec<String>,
) {
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(format!("- {kind} {name:?}"));
    }
    for (name, v) in new {
        match old.get(name) {
            None => out.push(format!("+ {kind} {name:?}")),
            Some(o) => fields(&format!("{kind} {name:?}"), o, v, out),
        }
    }
}

/// The differences from `old` to `new`, one line each (empty when they agree), then a
/// line per edge whose part changes, with what its agent will do.
pub fn diff(old: &Policy, new: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if old.asn != new.asn {
        out.push(format!("~ backbone: asn {} -> {}", old.asn, new.asn));
    }
    fields(
        "preferences",
        &serde_json::to_value(old.preferences).unwrap_or(Value::Null),
        &serde_json::to_value(new.preferences).unwrap_or(Value::Null),
        &mut out,
    );
    let (oe, oc) = entities(old);
    let (ne, nc) = entities(new);
    section("edge", &oe, &ne, &mut out);
    section("client", &oc, &nc, &mut out);
    for edge in &new.edges {
        let after = new
            .edge(&edge.name)
            .map(|(i, _)| part(new, i))
            .unwrap_or_default();
        let before = old
            .edge(&edge.name)
            .map(|(i, _)| part(old, i))
            .unwrap_or_default();
        let ops = changes(&before, &after);
        if !ops.is_empty() {
            out.push(format!("  edge {:?}: {}", edge.name, count(&ops)));
        }
    }
    for edge in old.edges.iter().filter(|e| new.edge(&e.name).is_none()) {
        out.push(format!(
            "  edge {:?}: no longer in the policy (its agent keeps what it applied)",
            edge.name
        ));
    }
    out
}

/// "1 tunnel added, 2 routes set" for a batch of changes.
pub fn count(ops: &[Value]) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for op in ops {
        *n.entry(op["op"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let words = |op: &str| match op {
        "add_tunnel" => "tunnel(s) added",
        "remove_tunnel" => "tunnel(s) removed",
        "set_route" => "route(s) set",
        "remove_route" => "route(s) removed",
        _ => "other change(s)",
    };
    n.iter()
        .map(|(op, k)| format!("{k} {}", words(op)))
        .collect::<Vec<_>>()
        .join(", ")
}
