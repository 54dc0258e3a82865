//! Replays every committed seed (fuzz/seeds/<target>/) and every minimised crash input
//! (fuzz/regressions/<target>/, the OVS `fuzz-regression` model) through the fuzz targets'
//! code under plain `cargo test`: no sanitizer, no nightly, no libFuzzer run. A fixed
//! finding stays fixed, and the invariant checks keep agreeing with the seeds.

use std::path::Path;

fn replay(dir: &Path, target: &str, run: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return 0;
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).expect("read an input");
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target}: {} fails", f.display());
    }
    files.len()
}

#[test]
fn seeds_and_regressions_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, run) in backbone_fuzz::targets::ALL {
        let seeds = replay(&root.join("seeds"), target, *run);
        assert!(seeds > 0, "{target}: no seeds (run scripts/fuzz-seeds.py)");
        let regressions = replay(&root.join("regressions"), target, *run);
        eprintln!("{target}: {seeds} seeds, {regressions} regressions");
    }
}

/// The fuzz lab is the end-to-end tests' lab: each pipeline seed, named by the outcome
/// tests/data/e2e_traffic.py or tests/data/hostile_corpus.py expects for it, gets that
/// outcome here too.
#[test]
fn pipeline_seeds_get_the_outcome_they_are_named_for() {
    use dataplane::buffer::TestBuf;
    use dataplane::pipeline::{Action, DropReason, Pipeline, PuntReason};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/pipeline_packet");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).expect("pipeline_packet seeds") {
        let path = e.expect("directory entry").path();
        let full = path.file_name().unwrap().to_string_lossy().into_owned();
        // hostile-<category>-<outcome>: the hostile corpus's seeds. Skipped: its sequence
        // cases, which depend on the packets before them (a replay alone is a first
        // packet), and frames over the mbuf data room, which the real binary receives as
        // chains (a test buffer is one piece).
        if full.starts_with("hostile-sequence-")
            || full == "hostile-jumbo-drop-bad_ipv4"
            || full.starts_with("drop-oversize_frame-")
        {
            continue;
        }
        let name = match full.strip_prefix("hostile-") {
            Some(rest) => format!("{}-hostile", rest.split_once('-').map_or(rest, |(_, r)| r)),
            None => full.clone(),
        };
        let data = std::fs::read(&path).unwrap();
        let pkt = backbone_fuzz::decode_packet(&data).expect("a seed has a control byte");
        let snap = backbone_fuzz::snapshot();
        let mut bufs = [TestBuf::with_headroom(pkt.frame, pkt.headroom)];
        let mut actions = [Action::Drop(DropReason::Runt)];
        Pipeline::new(1).process(&snap, pkt.port, &mut bufs, &mut actions);
        let got = actions[0];
        let ok = if name.starts_with("small-headroom-") {
            got == Action::Drop(DropReason::NoHeadroom)
        } else if name.starts_with("fwd-") {
            matches!(got, Action::Transmit(_))
        } else if name.starts_with("arp-") {
            got == Action::Punt(PuntReason::Arp)
        } else if let Some(rest) = name.strip_prefix("punt-") {
            // Punted, or answered (an echo request).
            PuntReason::ALL.iter().any(|r| {
                let punted = match got {
                    Action::Punt(x)
                    | Action::Answer { punt: x, .. }
                    | Action::Deliver { punt: x, .. } => x == *r,
                    Action::PathMtu(_) => *r == PuntReason::PathMtu,
                    _ => false,
                };
                punted && rest.starts_with(&format!("{}-", r.name()))
            })
        } else if let Some(rest) = name.strip_prefix("drop-") {
            // A drop, or a drop answered with an ICMP error.
            DropReason::ALL.iter().any(|r| {
                let dropped = match got {
                    Action::Drop(x) | Action::Reply { reason: x, .. } => x == *r,
                    _ => false,
                };
                dropped && rest.starts_with(&format!("{}-", r.name()))
            })
        } else {
            panic!("unexpected seed name {name}")
        };
        assert!(ok, "seed {full}: got {got:?}");
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} pipeline seeds");
}

/// Each pipeline_outer6 seed gets the outcome its name says (scripts/fuzz-seeds.py): `fwd-`
/// seeds are sent on, `reply-` seeds answered with an ICMP error, `drop-` seeds dropped, so the seeds
/// reach the paths the target's oracle checks.
#[test]
fn outer6_seeds_get_the_outcome_they_are_named_for() {
    use dataplane::buffer::TestBuf;
    use dataplane::pipeline::{Action, DropReason, Pipeline};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/pipeline_outer6");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).expect("pipeline_outer6 seeds") {
        let path = e.expect("directory entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let pkt = backbone_fuzz::decode_packet(&data).expect("a seed has a control byte");
        let snap = backbone_fuzz::targets::pipeline_outer6::snapshot();
        let mut bufs = [TestBuf::with_headroom(pkt.frame, pkt.headroom)];
        let mut actions = [Action::Drop(DropReason::Runt)];
        Pipeline::new(1).process(&snap, pkt.port, &mut bufs, &mut actions);
        let got = actions[0];
        let ok = if name.starts_with("fwd-") {
            matches!(got, Action::Transmit(_))
        } else if name.starts_with("reply-") {
            matches!(got, Action::Reply { .. })
        } else if name.starts_with("drop-") {
            matches!(got, Action::Drop(_))
        } else {
            panic!("unexpected seed name {name}")
        };
        assert!(ok, "seed {name}: got {got:?}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} pipeline_outer6 seeds");
}
