//! The audit trail of configuration changes, and the messages that say which change of a
//! request failed.
//!
//! Every change that is applied is logged (target `backbone::audit`, level info) as
//! `generation G: WHO: WHAT`, one line per change; a refused request as
//! `refused from WHO: WHY`. WHO is where it came from (`api uid=0 pid=4242 (backbone)`,
//! `SIGHUP`); a whole new configuration (`apply_config`, a reload) is logged as the
//! differences it makes. A request of more than [`AUDIT_LINES`] changes logs that many
//! and then one line that counts the rest by kind, so that a batch that replaces a full
//! Internet table cannot flood the log.
//!
//! Errors name the change, not the configuration file the appliance started from: a
//! single change as `set_route 10.9.0.0/16: route[3].tunnel: "nope" is not a configured
//! tunnel`, an entry of a batch as `change 2 (set_route 10.9.0.0/16): ...`. The field is
//! named by its path in the running configuration.

use pipeline_config::{ConfigDocument, ConfigError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The log target of the audit trail (`RUST_LOG=backbone::audit=info`).
pub const TARGET: &str = "backbone::audit";

/// Most lines one request writes to the audit trail.
pub const AUDIT_LINES: usize = 100;

/// At most 64 characters of a client's string.
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// A change in a few words: its kind and what it names (`set_route 10.9.0.0/16`).
pub fn short(op: &Value) -> String {
    let kind = field(op, "op").unwrap_or("?");
    let key = match kind {
        "add_tunnel" => op.get("tunnel").and_then(|t| field(t, "name")).map(clip),
        "remove_tunnel" => field(op, "name").map(clip),
        "set_route" | "add_route" => op.get("route").and_then(|r| field(r, "prefix")).map(clip),
        "remove_route" => field(op, "prefix").map(clip),
        "set_neighbor" | "remove_neighbor" => match (field(op, "port"), field(op, "ip")) {
            (Some(p), Some(ip)) => Some(format!("{} {}", clip(p), clip(ip))),
            _ => None,
        },
        "set_address" => match (field(op, "port"), field(op, "old"), field(op, "new")) {
            (Some(p), Some(o), Some(n)) => Some(format!("{} {} -> {}", clip(p), clip(o), clip(n))),
            _ => None,
        },
        "apply_config" => field(op, "path").map(clip),
        _ => None,
    };
    match key {
        Some(k) => format!("{} {k}", clip(kind)),
        None => clip(kind),
    }
}

/// A change in full, for the audit trail (`set_route 10.9.0.0/16 -> tunnel acme`).
pub fn long(op: &Value) -> String {
    let s = short(op);
    match field(op, "op") {
        Some("set_route" | "add_route") => {
            let r = op.get("route").cloned().unwrap_or(Value::Null);
            let to = if let Some(t) = field(&r, "tunnel") {
                format!("tunnel {}", clip(t))
            } else if let Some(p) = field(&r, "port") {
                format!(
                    "port {} via {}",
                    clip(p),
                    clip(field(&r, "next_hop").unwrap_or("?"))
                )
            } else if r.get("unreachable").is_some() {
                "unreachable".to_owned()
            } else if r.get("prohibit").is_some() {
                "prohibit".to_owned()
            } else {
                "blackhole".to_owned()
            };
            format!("{s} -> {to}")
        }
        Some("add_tunnel") => {
            let t = op.get("tunnel").cloned().unwrap_or(Value::Null);
            let mut table = t.as_object().cloned().unwrap_or_default();
            table.remove("name");
            format!("{s} {}", clip(&Value::Object(table).to_string()))
        }
        Some("set_neighbor") => format!("{s} is-at {}", clip(field(op, "mac").unwrap_or("?"))),
        _ => s,
    }
}

/// `e` (a change's error) prefixed with the change: `set_route P: e` for a request of one
/// change, `change I (set_route P): e` for an entry of a batch.
pub fn at_change(ops: &[Value], i: usize, e: &str) -> String {
    let what = ops.get(i).map(short).unwrap_or_default();
    if ops.len() > 1 {
        format!("change {i} ({what}): {e}")
    } else if e.starts_with(&what) {
        e.to_owned()
    } else {
        format!("{what}: {e}")
    }
}

/// A configuration error without the file name: a change through the API edits the
/// running configuration, not the file.
pub fn without_origin(e: &ConfigError) -> String {
    match e {
        ConfigError::Invalid {
            field,
            value,
            problem,
            ..
        } => match value {
            Some(v) => format!("{field}: {v} {problem}"),
            None => format!("{field}: {problem}"),
        },
        other => other.to_string(),
    }
}

/// The index and name inside `field` after `head` (`tunnel[2] "evil".remote` gives
/// (2, Some("evil"))).
fn indexed<'a>(field: &'a str, head: &str) -> Option<(usize, Option<&'a str>, &'a str)> {
    let rest = field.strip_prefix(head)?.strip_prefix('[')?;
    let close = rest.find(']')?;
    let index = rest[..close].parse().ok()?;
    let rest = &rest[close + 1..];
    match rest.strip_prefix(" \"") {
        Some(named) => {
            let end = named.find('"')?;
            Some((index, Some(&named[..end]), &named[end + 1..]))
        }
        None => Some((index, None, rest)),
    }
}

fn prefix_key(p: &str) -> String {
    p.parse::<ipnet::Ipv4Net>()
        .map_or_else(|_| p.to_owned(), |n| n.to_string())
}

/// The last change of `ops` that `pick` matches.
fn last(ops: &[Value], pick: impl Fn(&str, &Value) -> bool) -> Option<usize> {
    ops.iter()
        .rposition(|op| field(op, "op").is_some_and(|k| pick(k, op)))
}

/// A validation error of the edited configuration, blamed on the change that made it:
/// the one that set the table the error is about, or, for a table the request did not
/// touch, the one that removed what it names.
pub fn blame(e: &ConfigError, ops: &[Value], doc: &ConfigDocument) -> String {
    let ConfigError::Invalid {
        field: path, value, ..
    } = e
    else {
        return e.to_string();
    };
    let culprit = if let Some((i, _, _)) = indexed(path, "route") {
        let key = doc.route_prefix(i).map(prefix_key);
        last(ops, |k, op| {
            matches!(k, "set_route" | "add_route")
                && op
                    .get("route")
                    .and_then(|r| field(r, "prefix"))
                    .map(prefix_key)
                    == key
        })
    } else if let Some((i, port_name, rest)) = indexed(path, "port") {
        let n = rest
            .strip_prefix('.')
            .and_then(|r| indexed(r, "neighbor"))
            .and_then(|(j, _, _)| doc.neighbor_at(i, j));
        match n {
            Some((port, ip)) => last(ops, |k, op| {
                k == "set_neighbor"
                    && field(op, "port") == Some(port)
                    && field(op, "ip") == Some(ip)
            }),
            None => port_name.and_then(|p| {
                last(ops, |k, op| {
                    k == "set_neighbor" && field(op, "port") == Some(p)
                })
            }),
        }
    } else if let Some((_, Some(name), _)) = indexed(path, "tunnel") {
        last(ops, |k, op| {
            k == "add_tunnel" && op.get("tunnel").and_then(|t| field(t, "name")) == Some(name)
        })
    } else {
        None
    };
    // A table the request did not touch, broken by what it removed.
    let named = value.as_deref().map(|v| v.trim_matches('"'));
    let culprit = culprit
        .or_else(|| {
            named.and_then(|n| {
                last(ops, |k, op| {
                    (k == "remove_tunnel" && field(op, "name") == Some(n))
                        || (k == "remove_neighbor" && field(op, "ip") == Some(n))
                        || (k == "remove_route" && field(op, "prefix") == Some(n))
                })
            })
        })
        .or((ops.len() == 1).then_some(0));
    match culprit {
        // A whole new file: its errors name it.
        Some(i) if field(&ops[i], "op") == Some("apply_config") => {
            at_change(ops, i, &e.to_string())
        }
        Some(i) => at_change(ops, i, &without_origin(e)),
        None => format!(
            "the changes together leave the configuration invalid: {}",
            without_origin(e)
        ),
    }
}

/// Log an applied request: each change (or, for a new configuration, each difference it
/// made), at most [`AUDIT_LINES`] lines and then a count of the rest.
pub fn applied(
    generation: u64,
    who: &str,
    ops: &[Value],
    before: Option<&ConfigDocument>,
    after: &ConfigDocument,
) {
    let mut lines = 0usize;
    let mut rest: BTreeMap<String, usize> = BTreeMap::new();
    let mut line = |kind: &str, text: &dyn Fn() -> String| {
        if lines < AUDIT_LINES {
            log::info!(target: TARGET, "generation {generation}: {who}: {}", text());
            lines += 1;
        } else {
            *rest.entry(kind.to_owned()).or_default() += 1;
        }
    };
    for op in ops {
        let kind = field(op, "op").unwrap_or("?");
        line(kind, &|| long(op));
        if kind == "apply_config" {
            if let Some(before) = before {
                let differences = before.diff(after);
                if differences.is_empty() {
                    line("difference", &|| "  (no difference)".to_owned());
                }
                for d in differences {
                    line("difference", &|| format!("  {d}"));
                }
            }
        }
    }
    if !rest.is_empty() {
        let counted: Vec<String> = rest.iter().map(|(k, n)| format!("{n} {k}")).collect();
        log::info!(
            target: TARGET,
            "generation {generation}: {who}: and {} more not logged one by one",
            counted.join(", ")
        );
    }
}

/// Replace `path` with `text` atomically: a new file in the same directory (the old
/// file's permissions), flushed to disk, renamed over it, the directory flushed. On error
/// the file is as it was and the new one is removed.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let shown = path.display();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("{shown}: not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.saving-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{shown}: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_named() {
        let ops = [
            json!({"op": "set_route", "route": {"prefix": "10.9.0.0/16", "tunnel": "acme"}}),
            json!({"op": "remove_route", "prefix": "10.8.0.0/16"}),
        ];
        assert_eq!(short(&ops[0]), "set_route 10.9.0.0/16");
        assert_eq!(long(&ops[0]), "set_route 10.9.0.0/16 -> tunnel acme");
        assert_eq!(
            at_change(&ops, 1, "route.prefix: \"10.8.0.0/16\" has no route"),
            "change 1 (remove_route 10.8.0.0/16): route.prefix: \"10.8.0.0/16\" has no route"
        );
        assert_eq!(at_change(&ops[..1], 0, "x"), "set_route 10.9.0.0/16: x");
        assert_eq!(
            at_change(
                &[json!({"op": "remove_route"})],
                0,
                "remove_route: missing string field"
            ),
            "remove_route: missing string field"
        );
    }

    #[test]
    fn paths_are_read() {
        assert_eq!(
            indexed("tunnel[2] \"evil\".remote", "tunnel"),
            Some((2, Some("evil"), ".remote"))
        );
        assert_eq!(
            indexed("route[13].tunnel", "route"),
            Some((13, None, ".tunnel"))
        );
        assert_eq!(indexed("route.tunnel", "route"), None);
        assert_eq!(indexed("routes[1]", "route"), None);
    }

    const BASE: &str = r#"
        [[port]]
        name = "p0"
        device = "0"
        roles = ["client"]
        addresses = ["192.0.2.1"]
        [[tunnel]]
        name = "a"
        mode = "gre"
        local = "192.0.2.1"
        remote = "198.51.100.1"
        port = "p0"
        [[route]]
        prefix = "10.1.0.0/16"
        tunnel = "a"
    "#;

    fn refused(ops: &[Value]) -> String {
        let (mut doc, _) = ConfigDocument::parse(BASE, "/etc/backbone/backbone.toml").unwrap();
        for op in ops {
            match field(op, "op").unwrap() {
                "set_route" => doc.set_route(op["route"].clone()).unwrap(),
                "remove_tunnel" => doc.remove_tunnel(field(op, "name").unwrap()).unwrap(),
                _ => unreachable!(),
            }
        }
        let e = doc.validate().unwrap_err();
        blame(&e, ops, &doc)
    }

    #[test]
    fn validation_errors_are_blamed_on_their_change() {
        let ops = [
            json!({"op": "set_route", "route": {"prefix": "10.7.0.0/16", "tunnel": "a"}}),
            json!({"op": "set_route", "route": {"prefix": "10.9.0.0/16", "tunnel": "nope"}}),
        ];
        let e = refused(&ops);
        assert_eq!(
            e,
            "change 1 (set_route 10.9.0.0/16): route[2].tunnel: \"nope\" is not a configured tunnel"
        );
        // A route of the file broken by a removal: the removal is named.
        let ops = [
            json!({"op": "set_route", "route": {"prefix": "10.7.0.0/16", "blackhole": true}}),
            json!({"op": "remove_tunnel", "name": "a"}),
        ];
        let e = refused(&ops);
        assert!(
            e.starts_with("change 1 (remove_tunnel a): route[0].tunnel"),
            "{e}"
        );
        assert!(!e.contains("backbone.toml"), "{e}");
    }

    #[test]
    fn saving_is_atomic() {
        let dir = std::env::temp_dir().join(format!("bb-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("b.toml");
        std::fs::write(&f, "old").unwrap();
        write_atomically(&f, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no file left behind"
        );
        let e = write_atomically(&dir.join("missing/b.toml"), "x").unwrap_err();
        assert!(e.contains("missing/b.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
