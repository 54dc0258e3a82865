//! A client router's new address: the policy document with one client's `remote`
//! changed, and nothing else of its text (comments, order, layout) touched.
//!
//! `backbone-policy set-remote CLIENT ADDRESS` reads the stored document, makes this
//! change, validates the whole (the same rules as `apply`: the new address must not be
//! an edge's, nor inside a client's prefixes, nor give an edge two tunnels it cannot tell
//! apart) and writes it as `apply` does: one transaction, guarded by the revision read,
//! the document it replaces recorded for `rollback`. The agents replace that client's
//! tunnels in place (same name: its host interface and the BGP session inside it stay).

use toml_edit::{DocumentMut, Item, Value};

/// `text` with client `client`'s `remote` set to `address`; the old address with it.
/// Refused, naming the field, when the document does not parse, has no such client, or
/// the client has a placement with a `remote` of its own (a site with one router per
/// edge: which of them changed is the operator's to say, in the document).
pub fn set_remote(text: &str, client: &str, address: &str) -> Result<(String, String), String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("the policy: {e}"))?;
    let clients = doc
        .get_mut("client")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| "the policy has no [[client]]".to_owned())?;
    let (i, c) = clients
        .iter_mut()
        .enumerate()
        .find(|(_, c)| c.get("name").and_then(Item::as_str) == Some(client))
        .ok_or_else(|| format!("no [[client]] named {client:?} in the policy"))?;
    let at = format!("client[{i}] {client:?}");
    let own: Vec<usize> = match c.get("placement") {
        Some(Item::ArrayOfTables(a)) => a
            .iter()
            .enumerate()
            .filter(|(_, p)| p.contains_key("remote"))
            .map(|(j, _)| j)
            .collect(),
        Some(Item::Value(Value::Array(a))) => a
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.as_inline_table()
                    .is_some_and(|t| t.contains_key("remote"))
            })
            .map(|(j, _)| j)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(j) = own.first() {
        return Err(format!(
            "{at}.placement[{j}].remote: this placement has an address of its own; edit the \
             document (which router's address changed is not for set-remote to guess)"
        ));
    }
    let old = c
        .get("remote")
        .and_then(Item::as_str)
        .ok_or_else(|| format!("{at}.remote: missing"))?
        .to_owned();
    // The value replaced keeps its comment and spacing.
    let decor = c
        .get("remote")
        .and_then(Item::as_value)
        .map(|v| v.decor().clone());
    let mut new = Value::from(address);
    if let Some(d) = decor {
        *new.decor_mut() = d;
    }
    c.insert("remote", Item::Value(new));
    Ok((doc.to_string(), old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    const EXAMPLE: &str = include_str!("../examples/backbone.toml");

    #[test]
    fn only_the_clients_remote_changes() {
        let (text, old) = set_remote(EXAMPLE, "hooli", "198.51.100.41").unwrap();
        assert_eq!(old, "198.51.100.40");
        // The same text but for the address: comments and layout kept.
        assert_eq!(
            text,
            EXAMPLE.replacen(
                "remote = \"198.51.100.40\"",
                "remote = \"198.51.100.41\"",
                1
            )
        );
        let p = Policy::parse(&text, "changed").unwrap();
        let hooli = p.clients.iter().find(|c| c.name == "hooli").unwrap();
        assert_eq!(hooli.remote.to_string(), "198.51.100.41");
    }

    #[test]
    fn an_unknown_client_or_a_placement_of_its_own_is_refused() {
        let e = set_remote(EXAMPLE, "nobody", "198.51.100.41").unwrap_err();
        assert!(e.contains("no [[client]] named \"nobody\""), "{e}");
        // globex's placement at edge-2 with a remote of its own (array of tables).
        let own = EXAMPLE.replacen(
            "  edge = \"edge-2\"\n  role = \"primary\"\n  link = \"169.254.2.1/31\"",
            "  edge = \"edge-2\"\n  role = \"primary\"\n  link = \"169.254.2.1/31\"\n  remote = \"198.51.100.21\"",
            1,
        );
        assert_ne!(own, EXAMPLE);
        let e = set_remote(&own, "globex", "198.51.100.41").unwrap_err();
        assert!(
            e.starts_with("client[1] \"globex\".placement[0].remote:"),
            "{e}"
        );
        // The same as an inline table.
        let inline = "[[client]]\nname = \"x\"\nremote = \"192.0.2.1\"\nplacement = [{ edge = \"e1\", role = \"primary\", remote = \"192.0.2.9\" }]\n";
        let e = set_remote(inline, "x", "192.0.2.2").unwrap_err();
        assert!(e.starts_with("client[0] \"x\".placement[0].remote:"), "{e}");
    }

    #[test]
    fn a_bad_address_is_refused_by_the_policys_own_rules() {
        // set_remote writes what it is given; the whole document's validation (as
        // `apply` does it) names the field.
        for (address, why) in [
            ("198.51.100", "client[3] \"hooli\".remote"),
            ("10.255.0.2", "client[3] \"hooli\".remote"),
            ("10.1.0.9", "client[3] \"hooli\".remote"),
        ] {
            let (text, _) = set_remote(EXAMPLE, "hooli", address).unwrap();
            let e = Policy::parse(&text, "changed").unwrap_err().to_string();
            assert!(e.contains(why), "{address}: {e}");
        }
    }
}
