//! The running configuration against its file: what differs (`backbone ctl diff`), and
//! the file rewritten to hold the running configuration (`backbone ctl save`).
//!
//! Tables are matched by what names them: ports and tunnels by `name`, routes by `prefix`,
//! static neighbours by their port and `ip`. Values are compared as the schema reads them,
//! so a default left out on one side and written on the other is no difference.
//!
//! Rewriting keeps the file as its author wrote it wherever the running configuration
//! agrees with it: every unchanged table keeps its comments, order and layout; a changed
//! table is written anew in place of the old one, an added one after the last table of its
//! kind, a removed one disappears with its comments. A file that cannot be read as a
//! configuration any more is replaced by the running configuration written from scratch.

use crate::schema::{RawConfig, RawNeighbor, RawPort, RawRoute, RawTunnel};
use crate::ConfigDocument;
use serde::Serialize;
use serde_json::Value;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// One difference between the file and the running configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `eal`, `workers`, `icmp`, `fpm`, `bgp`, `health`, `port`, `neighbor`, `tunnel` or
    /// `route`.
    pub section: &'static str,
    /// What names the table: a port or tunnel name, a prefix, `port ip` for a neighbour
    /// (empty for `eal` and `workers`).
    pub key: String,
    pub change: Change,
}

/// How a table differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Running, not in the file: the table as JSON (TOML field names).
    Added(Value),
    /// In the file, not running.
    Removed(Value),
    /// In both, with these fields different.
    Changed(Vec<FieldChange>),
}

/// A field whose value differs; `None` where a side leaves it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub file: Option<Value>,
    pub running: Option<Value>,
}

impl std::fmt::Display for Difference {
    /// One line: `+ route 10.9.0.0/16 {tunnel = "acme"}`, `- tunnel initech`,
    /// `~ tunnel globex: key 200 -> 201`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.key.is_empty() {
            format!("[{}]", self.section)
        } else {
            format!("{} {}", self.section, self.key)
        };
        match &self.change {
            Change::Added(v) => write!(f, "+ {what} {}", inline(v, self.section)),
            Change::Removed(_) => write!(f, "- {what}"),
            Change::Changed(fields) => {
                write!(f, "~ {what}:")?;
                for (i, c) in fields.iter().enumerate() {
                    let show =
                        |v: &Option<Value>| v.as_ref().map_or("(none)".into(), Value::to_string);
                    let sep = if i == 0 { " " } else { ", " };
                    write!(
                        f,
                        "{sep}{} {} -> {}",
                        c.field,
                        show(&c.file),
                        show(&c.running)
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// A table's fields as `{a = 1, b = "x"}`, without the one that names it.
fn inline(v: &Value, section: &str) -> String {
    let key_field = match section {
        "tunnel" | "port" => "name",
        "route" => "prefix",
        "neighbor" => "ip",
        _ => "",
    };
    let fields: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != key_field)
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

impl Difference {
    /// Whether the change needs a restart (ports, `[eal]`, `[workers]`, `[fpm]`): a reload or
    /// `apply` refuses it.
    pub fn needs_restart(&self) -> bool {
        matches!(self.section, "eal" | "workers" | "port" | "fpm")
    }
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The fields of two tables (as JSON objects) that differ, in the table's field order.
fn field_changes(file: &Value, running: &Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let f = file.as_object().unwrap_or(&empty);
    let r = running.as_object().unwrap_or(&empty);
    let mut names: Vec<&String> = r.keys().collect();
    names.extend(f.keys().filter(|k| !r.contains_key(*k)));
    names
        .into_iter()
        .filter(|k| f.get(*k) != r.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            file: f.get(k).cloned(),
            running: r.get(k).cloned(),
        })
        .collect()
}

/// A route's prefix as a key: normalised where it parses.
fn route_key(r: &RawRoute) -> String {
    r.prefix
        .parse::<ipnet::Ipv4Net>()
        .map_or_else(|_| r.prefix.clone(), |p| p.to_string())
}

/// Differences of two keyed lists, file order first for removals, running order for the
/// rest.
fn diff_keyed<T: Serialize + PartialEq>(
    section: &'static str,
    file: &[T],
    running: &[T],
    key: impl Fn(&T) -> String,
    out: &mut Vec<Difference>,
) {
    for f in file {
        if !running.iter().any(|r| key(r) == key(f)) {
            out.push(Difference {
                section,
                key: key(f),
                change: Change::Removed(json(f)),
            });
        }
    }
    for r in running {
        match file.iter().find(|f| key(f) == key(r)) {
            None => out.push(Difference {
                section,
                key: key(r),
                change: Change::Added(json(r)),
            }),
            Some(f) if f != r => out.push(Difference {
                section,
                key: key(r),
                change: Change::Changed(field_changes(&json(f), &json(r))),
            }),
            Some(_) => {}
        }
    }
}

/// A port without its neighbours, which are compared one by one.
fn bare(p: &RawPort) -> RawPort {
    RawPort {
        neighbors: Vec::new(),
        ..p.clone()
    }
}

/// Every neighbour of `ports`, keyed `port ip`, as (key, neighbour).
fn neighbors(ports: &[RawPort]) -> Vec<(String, RawNeighbor)> {
    ports
        .iter()
        .flat_map(|p| {
            p.neighbors
                .iter()
                .map(move |n| (format!("{} {}", p.name, n.ip), n.clone()))
        })
        .collect()
}

#[derive(Serialize, PartialEq)]
struct Keyed<'a> {
    #[serde(skip)]
    key: &'a str,
    #[serde(flatten)]
    neighbor: &'a RawNeighbor,
}

impl ConfigDocument {
    /// How `running` differs from this document (the file).
    pub fn diff(&self, running: &ConfigDocument) -> Vec<Difference> {
        diff_raw(&self.raw, &running.raw)
    }

    /// The text of a configuration file that holds this (running) document, written over
    /// `file_text` (the file as it is now): see the module documentation. The caller checks
    /// that the text validates to the running configuration before it replaces the file.
    pub fn render_over(&self, file_text: Option<&str>) -> String {
        file_text
            .and_then(|text| render_merged(&self.raw, text))
            .unwrap_or_else(|| render_fresh(&self.raw))
    }
}

fn diff_raw(file: &RawConfig, running: &RawConfig) -> Vec<Difference> {
    let mut out = Vec::new();
    if file.eal != running.eal {
        out.push(Difference {
            section: "eal",
            key: String::new(),
            change: Change::Changed(field_changes(&json(&file.eal), &json(&running.eal))),
        });
    }
    if file.workers != running.workers {
        out.push(Difference {
            section: "workers",
            key: String::new(),
            change: Change::Changed(field_changes(&json(&file.workers), &json(&running.workers))),
        });
    }
    if file.icmp != running.icmp {
        out.push(Difference {
            section: "icmp",
            key: String::new(),
            change: Change::Changed(field_changes(&json(&file.icmp), &json(&running.icmp))),
        });
    }
    match (&file.fpm, &running.fpm) {
        (f, r) if f == r => {}
        (Some(f), None) => out.push(Difference {
            section: "fpm",
            key: String::new(),
            change: Change::Removed(json(f)),
        }),
        (None, Some(r)) => out.push(Difference {
            section: "fpm",
            key: String::new(),
            change: Change::Added(json(r)),
        }),
        (f, r) => out.push(Difference {
            section: "fpm",
            key: String::new(),
            change: Change::Changed(field_changes(&json(f), &json(r))),
        }),
    }
    if file.health != running.health {
        out.push(Difference {
            section: "health",
            key: String::new(),
            change: Change::Changed(field_changes(&json(&file.health), &json(&running.health))),
        });
    }
    if file.bgp != running.bgp {
        out.push(Difference {
            section: "bgp",
            key: String::new(),
            change: Change::Changed(field_changes(&json(&file.bgp), &json(&running.bgp))),
        });
    }
    let bare_file: Vec<RawPort> = file.ports.iter().map(bare).collect();
    let bare_running: Vec<RawPort> = running.ports.iter().map(bare).collect();
    diff_keyed(
        "port",
        &bare_file,
        &bare_running,
        |p| p.name.clone(),
        &mut out,
    );
    let nf = neighbors(&file.ports);
    let nr = neighbors(&running.ports);
    let kf: Vec<Keyed<'_>> = nf
        .iter()
        .map(|(key, neighbor)| Keyed { key, neighbor })
        .collect();
    let kr: Vec<Keyed<'_>> = nr
        .iter()
        .map(|(key, neighbor)| Keyed { key, neighbor })
        .collect();
    diff_keyed("neighbor", &kf, &kr, |k| k.key.to_owned(), &mut out);
    diff_keyed(
        "tunnel",
        &file.tunnels,
        &running.tunnels,
        |t: &RawTunnel| t.name.clone(),
        &mut out,
    );
    diff_keyed("route", &file.routes, &running.routes, route_key, &mut out);
    out
}

/// The running configuration written from scratch.
fn render_fresh(running: &RawConfig) -> String {
    toml::to_string(running).unwrap_or_default()
}

/// A table of the canonical rendering, without its position in that document, so that
/// it is written where it is put (after the table before it) in the file's document.
fn fresh(t: &Table) -> Table {
    let mut out = Table::new();
    for (k, item) in t.iter() {
        let item = match item {
            Item::Table(inner) => Item::Table(fresh(inner)),
            Item::ArrayOfTables(a) => {
                let mut aot = ArrayOfTables::new();
                for inner in a.iter() {
                    aot.push(fresh(inner));
                }
                Item::ArrayOfTables(aot)
            }
            other => other.clone(),
        };
        out.insert(k, item);
    }
    out
}

/// `running` written over the file `text`, or `None` where the file is not a readable
/// configuration (then it is written from scratch).
fn render_merged(running: &RawConfig, text: &str) -> Option<String> {
    let file: RawConfig = toml::from_str(text).ok()?;
    let mut doc: DocumentMut = text.parse().ok()?;
    let canonical: DocumentMut = render_fresh(running).parse().ok()?;
    let canon = canonical.as_table();

    for (section, same) in [
        ("eal", file.eal == running.eal),
        ("workers", file.workers == running.workers),
        ("icmp", file.icmp == running.icmp),
        ("fpm", file.fpm == running.fpm),
        ("bgp", file.bgp == running.bgp),
        ("health", file.health == running.health),
    ] {
        if same {
            continue;
        }
        match canon.get(section).and_then(Item::as_table) {
            Some(t) => {
                doc.insert(section, Item::Table(fresh(t)));
            }
            None => {
                doc.remove(section);
            }
        }
    }

    let ports = merge_tables(
        doc.get("port"),
        &file.ports,
        &running.ports,
        canon.get("port"),
        |p| p.name.clone(),
        Some(
            &|file_table: &Table, f: &RawPort, r: &RawPort, canon_table: &Table| {
                // Only the neighbours differ: keep the port's own text, merge them.
                if bare(f) != bare(r) {
                    return None;
                }
                let mut t = file_table.clone();
                let merged = merge_tables(
                    file_table.get("neighbor"),
                    &f.neighbors,
                    &r.neighbors,
                    canon_table.get("neighbor"),
                    |n| n.ip.clone(),
                    None,
                )?;
                if r.neighbors.is_empty() {
                    t.remove("neighbor");
                } else {
                    t.insert("neighbor", merged);
                }
                Some(t)
            },
        ),
    )?;
    set_or_remove(&mut doc, "port", ports, running.ports.is_empty());
    let tunnels = merge_tables(
        doc.get("tunnel"),
        &file.tunnels,
        &running.tunnels,
        canon.get("tunnel"),
        |t| t.name.clone(),
        None,
    )?;
    set_or_remove(&mut doc, "tunnel", tunnels, running.tunnels.is_empty());
    let routes = merge_tables(
        doc.get("route"),
        &file.routes,
        &running.routes,
        canon.get("route"),
        route_key,
        None,
    )?;
    set_or_remove(&mut doc, "route", routes, running.routes.is_empty());
    Some(doc.to_string())
}

fn set_or_remove(doc: &mut DocumentMut, key: &str, item: Item, empty: bool) {
    if empty {
        doc.remove(key);
    } else {
        doc.insert(key, item);
    }
}

/// How a table whose key matches but whose values differ may still keep the file's text:
/// (file table, file value, running value, canonical table) -> the table to write.
type Partial<'a, T> = &'a dyn Fn(&Table, &T, &T, &Table) -> Option<Table>;

/// The array of tables for `running`: the file's table where it is unchanged, the
/// canonical rendering where not. `None` where the file's item is not an array of tables
/// that matches `file` one to one (then the whole document is written from scratch).
fn merge_tables<T: PartialEq>(
    file_item: Option<&Item>,
    file: &[T],
    running: &[T],
    canon_item: Option<&Item>,
    key: impl Fn(&T) -> String,
    partial: Option<Partial<'_, T>>,
) -> Option<Item> {
    let empty = ArrayOfTables::new();
    let file_tables = match file_item {
        None => &empty,
        Some(Item::ArrayOfTables(a)) => a,
        Some(_) => return None,
    };
    if file_tables.len() != file.len() {
        return None;
    }
    let canon_tables = match canon_item {
        None => &empty,
        Some(Item::ArrayOfTables(a)) => a,
        Some(_) => return None,
    };
    let mut out = ArrayOfTables::new();
    for (i, r) in running.iter().enumerate() {
        let canon_table = canon_tables.get(i)?;
        let found = file.iter().position(|f| key(f) == key(r));
        let table = match found {
            Some(j) if file[j] == *r => file_tables.get(j)?.clone(),
            Some(j) => partial
                .and_then(|p| p(file_tables.get(j)?, &file[j], r, canon_table))
                .unwrap_or_else(|| fresh(canon_table)),
            None => fresh(canon_table),
        };
        out.push(table);
    }
    Some(Item::ArrayOfTables(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The lab.
[eal]
args = ["-l", "0-1"]

[[port]]                 # clients
name = "p0"
device = "0"
roles = ["client"]
addresses = ["192.0.2.1"]
  [[port.neighbor]]      # acme's router
  ip = "198.51.100.1"
  mac = "02:00:00:00:00:0a"

[[tunnel]]               # acme
name = "a"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.1"
key = 100
port = "p0"
prefixes = ["10.1.0.0/16"]

[[tunnel]]               # initech: going away
name = "b"
mode = "ipip"
local = "192.0.2.1"
remote = "198.51.100.2"
port = "p0"

[[route]]                # the rest
prefix = "0.0.0.0/0"
blackhole = true
"#;

    fn running() -> ConfigDocument {
        let (mut doc, _) = ConfigDocument::parse(FILE, "lab.toml").unwrap();
        doc.remove_tunnel("b").unwrap();
        doc.set_route(serde_json::json!({"prefix": "10.9.0.0/16", "tunnel": "a"}))
            .unwrap();
        doc.set_neighbor("p0", "198.51.100.2", "02:00:00:00:00:0b")
            .unwrap();
        doc
    }

    #[test]
    fn diff_names_each_change() {
        let (file, _) = ConfigDocument::parse(FILE, "lab.toml").unwrap();
        let run = running();
        let d = file.diff(&run);
        let summary: Vec<(String, &str)> = d
            .iter()
            .map(|d| {
                (
                    format!("{} {}", d.section, d.key),
                    match d.change {
                        Change::Added(_) => "added",
                        Change::Removed(_) => "removed",
                        Change::Changed(_) => "changed",
                    },
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("neighbor p0 198.51.100.2".to_owned(), "added"),
                ("tunnel b".to_owned(), "removed"),
                ("route 10.9.0.0/16".to_owned(), "added"),
            ]
        );
        assert!(file.diff(&file).is_empty());
        let mut changed = run.clone();
        changed
            .set_route(serde_json::json!({"prefix": "0.0.0.0/0", "tunnel": "a"}))
            .unwrap();
        let d = file.diff(&changed);
        let route = d.iter().find(|d| d.key == "0.0.0.0/0").unwrap();
        assert_eq!(
            route.change,
            Change::Changed(vec![
                FieldChange {
                    field: "tunnel".into(),
                    file: None,
                    running: Some(Value::from("a")),
                },
                FieldChange {
                    field: "blackhole".into(),
                    file: Some(Value::Bool(true)),
                    running: None,
                },
            ])
        );
    }

    #[test]
    fn saving_keeps_what_did_not_change() {
        let run = running();
        let text = run.render_over(Some(FILE));
        // Comments of the tables kept, the removed tunnel's gone with it.
        for kept in [
            "# The lab.",
            "# clients",
            "# acme's router",
            "# acme\n",
            "# the rest",
        ] {
            assert!(text.contains(kept), "{kept:?} lost:\n{text}");
        }
        assert!(!text.contains("initech"), "{text}");
        // What it says is what runs.
        let (saved, cfg) = ConfigDocument::parse(&text, "saved").unwrap();
        assert_eq!(cfg, run.validate().unwrap(), "{text}");
        assert!(saved.diff(&run).is_empty(), "{text}");
        // Saving again changes nothing.
        assert_eq!(run.render_over(Some(&text)), text);
    }

    #[test]
    fn an_unreadable_file_is_written_from_scratch() {
        let run = running();
        for broken in [None, Some("this is not toml ["), Some("route = 5\n")] {
            let text = run.render_over(broken);
            let (_, cfg) = ConfigDocument::parse(&text, "saved").unwrap();
            assert_eq!(cfg, run.validate().unwrap(), "{text}");
        }
    }
}
