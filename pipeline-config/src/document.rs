//! A configuration as a document that can be edited while the appliance runs.
//!
//! The control API edits the document (add or remove a tunnel, a route, a neighbour; or
//! replace it with a new file) and validates the *whole* result with the same code that
//! validates files, so a change accepted at run time is one the file format would accept.
//! Tunnel and route tables arrive as JSON objects with exactly the TOML field names, and are
//! deserialized into the same schema types (unknown fields are errors). An edit that fails
//! leaves the document as it was.

use crate::schema::{RawConfig, RawPort, RawRoute, RawTunnel};
use crate::{ConfigError, ValidatedConfig};
use std::path::Path;

/// A parsed configuration document and the name its errors carry.
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    pub(crate) raw: RawConfig,
    origin: String,
    /// Route position by prefix, built on first use: batches of route changes on big
    /// tables must not scan the route list once per change.
    pub(crate) route_index: Option<std::collections::HashMap<ipnet::Ipv4Net, usize>>,
    /// What route changes are checked against ([`ConfigDocument::edit_routes`]), built on
    /// first use and dropped by any other change.
    pub(crate) route_context: Option<Box<crate::edit::RouteContext>>,
}

fn invalid(origin: &str, field: &str, value: Option<String>, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        field: field.to_owned(),
        value,
        problem: problem.to_owned(),
    }
}

/// The port called `port`, or an error on `field` if there is none.
fn port_mut<'a>(
    ports: &'a mut [RawPort],
    origin: &str,
    field: &str,
    port: &str,
) -> Result<&'a mut RawPort, ConfigError> {
    ports.iter_mut().find(|p| p.name == port).ok_or_else(|| {
        invalid(
            origin,
            field,
            Some(format!("{port:?}")),
            "is not a configured port",
        )
    })
}

impl ConfigDocument {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<(ConfigDocument, ValidatedConfig), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate `text`; `origin` names it in errors.
    pub fn parse(
        text: &str,
        origin: &str,
    ) -> Result<(ConfigDocument, ValidatedConfig), ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::syntax(origin, text, &e))?;
        let validated = crate::validate::validate(&raw, origin)?;
        Ok((
            ConfigDocument {
                raw,
                origin: origin.to_owned(),
                route_index: None,
                route_context: None,
            },
            validated,
        ))
    }

    /// Read and parse a file without validating it (to compare it, say).
    pub fn read(path: &Path) -> Result<ConfigDocument, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig =
            toml::from_str(&text).map_err(|e| ConfigError::syntax(&origin, &text, &e))?;
        Ok(ConfigDocument {
            raw,
            origin,
            route_index: None,
            route_context: None,
        })
    }

    /// Whether two documents configure the same (whatever their origin).
    pub fn same_as(&self, other: &ConfigDocument) -> bool {
        self.raw == other.raw
    }

    /// The name errors carry (the file it was read from).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The prefix of route `index` (file order), as written.
    pub fn route_prefix(&self, index: usize) -> Option<&str> {
        self.raw.routes.get(index).map(|r| r.prefix.as_str())
    }

    /// Port `port`'s name and its static neighbour `index`'s address, as written.
    pub fn neighbor_at(&self, port: usize, index: usize) -> Option<(&str, &str)> {
        let p = self.raw.ports.get(port)?;
        Some((p.name.as_str(), p.neighbors.get(index)?.ip.as_str()))
    }

    /// Validate the document as a whole.
    pub fn validate(&self) -> Result<ValidatedConfig, ConfigError> {
        crate::validate::validate(&self.raw, &self.origin)
    }

    /// Add a `[[tunnel]]` table given as JSON (TOML field names). A tunnel of that name
    /// must not exist.
    pub fn add_tunnel(&mut self, table: serde_json::Value) -> Result<(), ConfigError> {
        let t: RawTunnel = from_json(&self.origin, "tunnel", table)?;
        if self.raw.tunnels.iter().any(|x| x.name == t.name) {
            return Err(invalid(
                &self.origin,
                "tunnel.name",
                Some(format!("{:?}", t.name)),
                "is already a tunnel (remove it first)",
            ));
        }
        self.raw.tunnels.push(t);
        self.route_context = None;
        Ok(())
    }

    /// Remove the tunnel called `name`.
    pub fn remove_tunnel(&mut self, name: &str) -> Result<(), ConfigError> {
        let before = self.raw.tunnels.len();
        self.raw.tunnels.retain(|t| t.name != name);
        if self.raw.tunnels.len() == before {
            return Err(invalid(
                &self.origin,
                "tunnel.name",
                Some(format!("{name:?}")),
                "is not a configured tunnel",
            ));
        }
        self.route_context = None;
        Ok(())
    }

    pub(crate) fn route_index_mut(
        &mut self,
    ) -> &mut std::collections::HashMap<ipnet::Ipv4Net, usize> {
        let routes = &self.raw.routes;
        self.route_index.get_or_insert_with(|| {
            routes
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.prefix.parse().ok().map(|p| (p, i)))
                .collect()
        })
    }

    /// Add a `[[route]]` table given as JSON; a route for the same prefix is replaced
    /// (one change: the prefix is never without a route).
    pub fn set_route(&mut self, table: serde_json::Value) -> Result<(), ConfigError> {
        let r: RawRoute = from_json(&self.origin, "route", table)?;
        if let Ok(prefix) = r.prefix.parse::<ipnet::Ipv6Net>() {
            // IPv6 routes are not indexed (they are few, and changed with the whole
            // configuration): found by a scan.
            match self.route6_position(prefix) {
                Some(i) => self.raw.routes[i] = r,
                None => {
                    self.raw.routes.push(r);
                    self.route_index = None;
                }
            }
            return Ok(());
        }
        let Ok(prefix) = r.prefix.parse::<ipnet::Ipv4Net>() else {
            // Not a prefix: keep it, and validation names it.
            self.raw.routes.push(r);
            self.route_index = None;
            return Ok(());
        };
        let next = self.raw.routes.len();
        match self.route_index_mut().get(&prefix).copied() {
            Some(i) => self.raw.routes[i] = r,
            None => {
                self.route_index_mut().insert(prefix, next);
                self.raw.routes.push(r);
            }
        }
        Ok(())
    }

    /// Index the routes by prefix now rather than at the first route change: route changes
    /// find their route without scanning the list, and the first one pays nothing more.
    pub fn index_routes(&mut self) {
        self.route_index_mut();
    }

    /// Where the route for the IPv6 `prefix` is.
    fn route6_position(&self, prefix: ipnet::Ipv6Net) -> Option<usize> {
        self.raw
            .routes
            .iter()
            .position(|r| r.prefix.parse::<ipnet::Ipv6Net>() == Ok(prefix))
    }

    /// Where the route for `prefix` is, and its prefix; an error that names it if none is.
    pub(crate) fn route_position(
        &mut self,
        prefix: &str,
    ) -> Result<(usize, ipnet::Ipv4Net), ConfigError> {
        let missing = || {
            invalid(
                &self.origin,
                "route.prefix",
                Some(format!("{prefix:?}")),
                "has no route",
            )
        };
        let Ok(net) = prefix.parse::<ipnet::Ipv4Net>() else {
            return Err(missing());
        };
        match self.route_index_mut().get(&net).copied() {
            Some(i) => Ok((i, net)),
            None => Err(invalid(
                &self.origin,
                "route.prefix",
                Some(format!("{prefix:?}")),
                "has no route",
            )),
        }
    }

    /// Remove the route for `prefix`.
    pub fn remove_route(&mut self, prefix: &str) -> Result<(), ConfigError> {
        if let Ok(net) = prefix.parse::<ipnet::Ipv6Net>() {
            let Some(i) = self.route6_position(net) else {
                return Err(invalid(
                    &self.origin,
                    "route.prefix",
                    Some(format!("{prefix:?}")),
                    "has no route",
                ));
            };
            self.raw.routes.remove(i);
            // Positions after it moved: index again when next needed.
            self.route_index = None;
            return Ok(());
        }
        let (i, net) = self.route_position(prefix)?;
        self.route_index_mut().remove(&net);
        self.raw.routes.swap_remove(i);
        // The last route moved into slot i.
        if let Some(moved) = self.raw.routes.get(i).and_then(|r| r.prefix.parse().ok()) {
            self.route_index_mut().insert(moved, i);
        }
        Ok(())
    }

    /// Add or replace a static neighbour on the port called `port`.
    pub fn set_neighbor(&mut self, port: &str, ip: &str, mac: &str) -> Result<(), ConfigError> {
        self.route_context = None;
        let origin = self.origin.clone();
        let p = port_mut(&mut self.raw.ports, &origin, "neighbor.port", port)?;
        match p.neighbors.iter_mut().find(|n| n.ip == ip) {
            Some(n) => n.mac = mac.to_owned(),
            None => p.neighbors.push(crate::schema::RawNeighbor {
                ip: ip.to_owned(),
                mac: mac.to_owned(),
            }),
        }
        Ok(())
    }

    /// Replace our address `old` on the port called `port` by `new`, and move every tunnel
    /// whose `local` is `old` to `new` (a client site's WAN address changing: the tunnels
    /// re-source from the new one). Returns the tunnels moved. Checked with the whole
    /// document when it is validated: nothing applies unless all of it does.
    pub fn set_address(
        &mut self,
        port: &str,
        old: &str,
        new: &str,
    ) -> Result<Vec<String>, ConfigError> {
        self.route_context = None;
        let origin = self.origin.clone();
        let p = port_mut(&mut self.raw.ports, &origin, "address.port", port)?;
        let Some(at) = p.addresses.iter().position(|a| a == old) else {
            return Err(invalid(
                &origin,
                "address.old",
                Some(format!("{old:?}")),
                &format!("is not an address of port {port:?}"),
            ));
        };
        p.addresses[at] = new.to_owned();
        let mut moved = Vec::new();
        for t in &mut self.raw.tunnels {
            if t.local == old {
                new.clone_into(&mut t.local);
                moved.push(t.name.clone());
            }
        }
        Ok(moved)
    }

    /// Remove a static neighbour.
    pub fn remove_neighbor(&mut self, port: &str, ip: &str) -> Result<(), ConfigError> {
        self.route_context = None;
        let origin = self.origin.clone();
        let p = port_mut(&mut self.raw.ports, &origin, "neighbor.port", port)?;
        let before = p.neighbors.len();
        p.neighbors.retain(|n| n.ip != ip);
        if p.neighbors.len() == before {
            return Err(invalid(
                &origin,
                "neighbor.ip",
                Some(format!("{ip:?}")),
                "is not a static neighbour of that port",
            ));
        }
        Ok(())
    }
}

/// A table given as JSON, deserialized with the path of what is wrong in the error: e.g.
/// `tunnel.key: invalid type: string "100", expected u32`.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    origin: &str,
    what: &str,
    table: serde_json::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            what.to_owned()
        } else {
            format!("{what}.{path}")
        };
        invalid(origin, &field, None, &e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        prefixes = ["10.1.0.0/16"]
    "#;

    #[test]
    fn wrong_typed_fields_in_an_edit_are_named_by_their_path() {
        let (mut doc, _) = ConfigDocument::parse(BASE, "t.toml").unwrap();
        let e = doc
            .add_tunnel(
                serde_json::json!({"name": "b", "mode": "gre", "local": "192.0.2.1",
                "remote": "198.51.100.2", "port": "p0", "key": "100"}),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("tunnel.key"), "{e}");
        assert!(e.contains("\"100\""), "{e}");
        let e = doc
            .set_route(serde_json::json!({"prefix": "10.9.0.0/16", "tunnel": ["a"]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("route.tunnel"), "{e}");
        let e = doc
            .set_route(serde_json::json!({"prefix": "10.9.0.0/16", "tunel": "a"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tunel"), "{e}");
        assert_eq!(doc.validate().unwrap().routes.len(), 0, "nothing applied");
    }

    #[test]
    fn edits_are_validated_like_the_file() {
        let (mut doc, _) = ConfigDocument::parse(BASE, "t.toml").unwrap();
        doc.set_route(serde_json::json!({"prefix": "10.9.0.0/16", "tunnel": "a"}))
            .unwrap();
        assert_eq!(doc.validate().unwrap().routes.len(), 1);
        doc.set_route(serde_json::json!({"prefix": "10.9.0.0/16", "tunnel": "nope"}))
            .unwrap();
        let e = doc.validate().unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("route[0].tunnel"), "{e}");
        let e = doc
            .add_tunnel(serde_json::json!({"name": "b", "mode": "gre", "colour": "red"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "unknown fields are refused: {e}");
        assert!(doc.remove_tunnel("zzz").is_err());
        assert!(doc.remove_route("10.8.0.0/16").is_err());
        doc.remove_route("10.9.0.0/16").unwrap();
        assert!(doc.validate().is_ok());
    }

    #[test]
    fn route_edits_keep_the_index_right() {
        let (mut doc, _) = ConfigDocument::parse(BASE, "t.toml").unwrap();
        for i in 0..5 {
            doc.set_route(
                serde_json::json!({"prefix": format!("10.{}.0.0/16", 50 + i), "tunnel": "a"}),
            )
            .unwrap();
        }
        doc.remove_route("10.51.0.0/16").unwrap(); // the last route moves into its place
        doc.remove_route("10.54.0.0/16").unwrap(); // the moved one, found at its new place
        assert!(doc.remove_route("10.51.0.0/16").is_err());
        doc.set_route(serde_json::json!({"prefix": "10.52.0.0/16", "blackhole": true}))
            .unwrap();
        doc.set_route(serde_json::json!({"prefix": "10.51.0.0/16", "tunnel": "a"}))
            .unwrap();
        let cfg = doc.validate().unwrap();
        let mut got: Vec<String> = cfg.routes.iter().map(|r| r.prefix.to_string()).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "10.50.0.0/16",
                "10.51.0.0/16",
                "10.52.0.0/16",
                "10.53.0.0/16"
            ]
        );
        let blackholes = cfg
            .routes
            .iter()
            .filter(|r| r.target == crate::RouteTarget::Blackhole)
            .count();
        assert_eq!(
            blackholes, 1,
            "the route for 10.52/16 was replaced, not added"
        );
    }
}
