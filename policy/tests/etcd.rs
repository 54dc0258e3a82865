//! The policy commands against a real etcd (one member of the test's own): apply in one
//! transaction, show, diff, rollback; a bad document refused whole with nothing written
//! (etcd's revision does not move); an apply that lost a race writes nothing; agents in
//! dry-run mode read the policy, hold a new tunnel until the other edge reports the
//! revision made, follow a change and report under their leases, revoked on SIGTERM;
//! `--once` waits out the hold before it stops.

mod common;

use backbone_policy::store::{Store, StoreError};
use common::{policy, scratch, text, wait_for, Etcd, KillOnDrop, POLICY};
use std::process::Command;
use std::time::Duration;

const EXAMPLE: &str = include_str!("../examples/backbone.toml");

/// The example with globex's key changed and a client umbrella added on edge-2.
fn second() -> String {
    let text = EXAMPLE.replace("key = 200\n", "key = 201\n");
    assert_ne!(text, EXAMPLE);
    text + r#"
[[client]]
name = "umbrella"
mode = "ipip"
remote = "198.51.100.50"
prefixes = ["10.5.0.0/16"]
  [[client.placement]]
  edge = "edge-2"
  role = "primary"
"#
}

#[test]
fn apply_show_diff_rollback() {
    let dir = scratch("apply");
    let etcd = Etcd::start(&dir);
    let first = dir.join("first.toml");
    let next = dir.join("second.toml");
    std::fs::write(&first, EXAMPLE).unwrap();
    std::fs::write(&next, second()).unwrap();
    let doc = "/backbone/policy/document";
    let f = first.to_str().unwrap();
    let n = next.to_str().unwrap();

    // Nothing stored yet: diff says so; rollback has nothing to restore.
    let out = policy(&etcd, &["rollback"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no previous policy"), "{}", text(&out));

    let before = etcd.revision();
    let out = policy(&etcd, &["apply", f]);
    assert!(out.status.success(), "{}", text(&out));
    // One transaction: etcd's revision moved by exactly one.
    let r1 = etcd.revision();
    assert_eq!(r1, before + 1);
    assert!(
        text(&out).contains(&format!("applied: revision {r1} (the first policy)")),
        "{}",
        text(&out)
    );
    assert_eq!(etcd.get(doc).as_deref(), Some(EXAMPLE));
    assert_eq!(etcd.get("/backbone/policy/previous"), None);

    // show: the document as written, under its revision.
    let out = policy(&etcd, &["show"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(shown, format!("# {doc} at revision {r1}\n{EXAMPLE}"));

    // diff: the same document, then the second one.
    let out = policy(&etcd, &["diff", f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no difference"));
    let out = policy(&etcd, &["diff", n]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = text(&out);
    assert!(d.contains("~ client \"globex\": key 200 -> 201"), "{d}");
    assert!(d.contains("+ client \"umbrella\""), "{d}");
    // edge-1 gains a route to umbrella; edge-2 replaces globex's tunnel and adds umbrella's.
    assert!(d.contains("  edge \"edge-1\": 1 route(s) set"), "{d}");
    assert!(
        d.contains("  edge \"edge-2\": 2 tunnel(s) added, 1 tunnel(s) removed"),
        "{d}"
    );
    assert_eq!(etcd.revision(), r1, "diff writes nothing");

    // apply the second: one transaction writes it and records the first.
    let out = policy(&etcd, &["apply", n]);
    assert!(out.status.success(), "{}", text(&out));
    let r2 = etcd.revision();
    assert_eq!(r2, r1 + 1);
    assert!(
        text(&out).contains(&format!("applied: revision {r2} (replaces revision {r1};")),
        "{}",
        text(&out)
    );
    assert_eq!(etcd.get(doc).as_deref(), Some(second().as_str()));
    let previous: serde_json::Value =
        serde_json::from_str(&etcd.get("/backbone/policy/previous").unwrap()).unwrap();
    assert_eq!(previous["revision"], r1);
    assert_eq!(previous["document"], EXAMPLE);

    // The same document again: nothing written.
    let out = policy(&etcd, &["apply", n]);
    assert!(text(&out).contains("unchanged"), "{}", text(&out));
    assert_eq!(etcd.revision(), r2);

    // rollback: the first document again, and the second recorded in its place.
    let out = policy(&etcd, &["rollback"]);
    assert!(out.status.success(), "{}", text(&out));
    let r3 = etcd.revision();
    assert_eq!(r3, r2 + 1);
    assert!(
        text(&out).contains(&format!(
            "revision {r3} holds the document of revision {r1}"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(etcd.get(doc).as_deref(), Some(EXAMPLE));
    let previous: serde_json::Value =
        serde_json::from_str(&etcd.get("/backbone/policy/previous").unwrap()).unwrap();
    assert_eq!(previous["revision"], r2);
    // ... and a second rollback undoes the first.
    let out = policy(&etcd, &["rollback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(etcd.get(doc).as_deref(), Some(second().as_str()));
}

#[test]
fn a_bad_document_is_refused_whole_and_nothing_is_written() {
    let dir = scratch("bad");
    let etcd = Etcd::start(&dir);
    let good = dir.join("good.toml");
    std::fs::write(&good, EXAMPLE).unwrap();
    assert!(policy(&etcd, &["apply", good.to_str().unwrap()])
        .status
        .success());
    let stored = etcd.get("/backbone/policy/document");
    let revision = etcd.revision();

    // Broken in its last client only, after three good ones and a good change to globex.
    let bad = dir.join("bad.toml");
    let text_bad = second().replace("key = 201", "key = 202")
        + "  [[client.placement]]\n  edge = \"edge-9\"\n  role = \"backup\"\n";
    std::fs::write(&bad, &text_bad).unwrap();
    for cmd in ["apply", "diff", "check"] {
        let out = policy(&etcd, &[cmd, bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out));
        let msg = text(&out);
        assert!(
            msg.contains(
                "client[4] \"umbrella\".placement[1].edge: \"edge-9\" is not a defined [[edge]]"
            ),
            "{cmd}: {msg}"
        );
    }
    // A syntax error, too.
    std::fs::write(&bad, "[backbone]\nasn = 65000\n[[edge]\n").unwrap();
    let out = policy(&etcd, &["apply", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("TOML parse error"), "{}", text(&out));
    // Nothing was written: the revision did not move, the document is the good one.
    assert_eq!(etcd.revision(), revision);
    assert_eq!(etcd.get("/backbone/policy/document"), stored);
    // And the refusal was not for want of etcd: the good document goes through.
    std::fs::write(&good, second()).unwrap();
    assert!(policy(&etcd, &["apply", good.to_str().unwrap()])
        .status
        .success());
    assert_eq!(etcd.revision(), revision + 1);
}

#[test]
fn an_apply_that_lost_a_race_writes_nothing() {
    let dir = scratch("race");
    let etcd = Etcd::start(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = Store::connect(&etcd.url(), "/backbone").await.unwrap();
        let first = store.write(EXAMPLE, None).await.unwrap();
        let (seen, _) = store.document().await.unwrap();
        let seen = seen.unwrap();
        assert_eq!(seen.revision, first.revision);
        // Another operator applies in between.
        store.write(&second(), Some(&seen)).await.unwrap();
        let now = etcd.revision();
        match store.write("[backbone]\n", Some(&seen)).await {
            Err(StoreError::Conflict { now: n }) => assert_eq!(n, now),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(etcd.revision(), now);
        // A first write when one exists is refused too.
        assert!(matches!(
            store.write(EXAMPLE, None).await,
            Err(StoreError::Conflict { .. })
        ));
    });
    assert_eq!(
        etcd.get("/backbone/policy/document").as_deref(),
        Some(second().as_str())
    );
}

#[test]
fn dry_run_agents_follow_the_policy_make_before_announce_and_report() {
    let dir = scratch("dry");
    let etcd = Etcd::start(&dir);
    let file = dir.join("p.toml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, EXAMPLE).unwrap();
    assert!(policy(&etcd, &["apply", f]).status.success());
    let r1 = etcd.mod_revision("/backbone/policy/document");
    let agent = |edge: &str, out: &std::path::Path| {
        KillOnDrop(Some(
            Command::new(POLICY)
                .args(["agent", "--edge", edge, "--dry-run", "--etcd", &etcd.url()])
                .args(["--resync-ms", "200"])
                .env("RUST_LOG", "info")
                .stdout(std::fs::File::create(out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("log")).unwrap())
                .spawn()
                .unwrap(),
        ))
    };
    let out_path = dir.join("agent-2.out");
    let _agent2 = agent("edge-2", &out_path);
    let status = |field: &str, want: i64| {
        wait_for(
            Duration::from_secs(20),
            &format!("edge-2 reporting {field} {want}"),
            || {
                let v = etcd
                    .get("/backbone/edges/edge-2/status")
                    .ok_or("no report")?;
                let v: serde_json::Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
                if v[field] == want {
                    Ok(v)
                } else {
                    Err(format!("{v}"))
                }
            },
        )
    };
    // edge-2 hosts globex and hooli; acme's and initech's prefixes go to edge-1. Make
    // before announce: edge-1 has no agent, so it does not route globex and hooli yet,
    // and edge-2 holds their tunnels (where their announcements would start); the routes
    // to edge-1 run at once.
    let v = status("made_revision", r1);
    assert_eq!(v["held"], serde_json::json!(["globex", "hooli"]), "{v}");
    assert_eq!(v["revision"], 0, "{v}");
    assert_eq!(v["tunnels"], 0, "{v}");
    assert_eq!(v["routes"], 2, "{v}");
    assert_eq!(v["dry_run"], true);
    // apply --wait (the unchanged document: it waits for the current revision) names
    // both edges and why.
    let out = policy(&etcd, &["apply", f, "--wait", "0.5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains(&format!(
            "not every edge runs revision {r1}: edge-1: no report"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("edge-2: revision 0, holding globex, hooli until every other edge reports revision {r1} made")),
        "{msg}"
    );
    // edge-1's agent reports the revision made: edge-2 brings the tunnels up.
    let mut agent1 = agent("edge-1", &dir.join("agent-1.out"));
    let v = status("revision", r1);
    assert_eq!(v["tunnels"], 2, "{v}");
    assert_eq!(v["held"], serde_json::json!([]), "{v}");

    // A change: globex's key, and umbrella new on edge-2.
    std::fs::write(&file, second()).unwrap();
    let out = policy(&etcd, &["apply", f, "--wait", "20"]);
    assert!(out.status.success(), "{}", text(&out));
    let r2 = etcd.mod_revision("/backbone/policy/document");
    let msg = text(&out);
    for edge in ["edge-1", "edge-2"] {
        assert!(
            msg.contains(&format!("edge \"{edge}\" runs revision {r2} after")),
            "{msg}"
        );
    }
    let v = status("revision", r2);
    assert_eq!(v["tunnels"], 3);
    let printed = std::fs::read_to_string(&out_path).unwrap();
    for line in [
        format!("edge edge-2 revision {r1}: 0 tunnels, 2 routes (2 route(s) set), holding globex, hooli"),
        format!("edge edge-2 revision {r1}: 2 tunnels, 2 routes (2 tunnel(s) added)"),
        // umbrella may have waited for edge-1's report of r2, or not.
        format!("edge edge-2 revision {r2}: 3 tunnels, 2 routes ("),
    ] {
        assert!(printed.contains(&line), "{line:?} in:\n{printed}");
    }
    // `status` shows the report.
    let out = policy(&etcd, &["status"]);
    assert!(
        text(&out).contains(&format!("edge-2: revision {r2}")),
        "{}",
        text(&out)
    );
    let applied: serde_json::Value =
        serde_json::from_str(&etcd.get("/backbone/edges/edge-2/applied").unwrap()).unwrap();
    assert_eq!(applied["revision"], r2);
    assert_eq!(applied["part"]["tunnels"].as_object().unwrap().len(), 3);

    // SIGTERM: the agent revokes its lease before it exits (0), so its report goes at
    // once, not after the lease's 10 s; what it applied stays recorded.
    let mut child = agent1.0.take().unwrap();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert_eq!(etcd.get("/backbone/edges/edge-1/status"), None);
    assert!(etcd.get("/backbone/edges/edge-1/applied").is_some());
}

#[test]
fn an_agent_once_waits_for_its_held_tunnels() {
    let dir = scratch("once");
    let etcd = Etcd::start(&dir);
    let file = dir.join("p.toml");
    // edge-1 has no agent: edge-2's new tunnels are held for make_before_announce_s.
    let doc = EXAMPLE.replacen(
        "make_before_announce_s = 30",
        "make_before_announce_s = 1",
        1,
    );
    assert_ne!(doc, EXAMPLE);
    std::fs::write(&file, doc).unwrap();
    assert!(policy(&etcd, &["apply", file.to_str().unwrap()])
        .status
        .success());
    let r1 = etcd.mod_revision("/backbone/policy/document");
    let start = std::time::Instant::now();
    let out = Command::new(POLICY)
        .args([
            "agent",
            "--edge",
            "edge-2",
            "--dry-run",
            "--once",
            "--etcd",
            &etcd.url(),
        ])
        .args(["--resync-ms", "100"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let took = start.elapsed();
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    // First the routes with the tunnels held, then (the hold over) the tunnels, then exit.
    let held = printed
        .find(&format!(
            "edge edge-2 revision {r1}: 0 tunnels, 2 routes (2 route(s) set), holding globex, hooli"
        ))
        .unwrap_or_else(|| panic!("{printed}"));
    let up = printed
        .find(&format!(
            "edge edge-2 revision {r1}: 2 tunnels, 2 routes (2 tunnel(s) added)"
        ))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(held < up, "{printed}");
    assert!(
        printed.contains("not every edge reports it made after 1 s (edge-1)"),
        "{printed}"
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let applied: serde_json::Value =
        serde_json::from_str(&etcd.get("/backbone/edges/edge-2/applied").unwrap()).unwrap();
    assert_eq!(applied["revision"], r1);
    assert_eq!(
        etcd.get("/backbone/edges/edge-2/status"),
        None,
        "its lease revoked"
    );
}
