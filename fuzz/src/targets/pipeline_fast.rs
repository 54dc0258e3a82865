//! The fast path against the general stages (dataplane/src/pipeline/fast.rs): each input's
//! bursts (as `pipeline_burst` reads them) go through two workers, each on a new lab
//! snapshot of its own (its own GRE sequence state), one with the fast path (the default)
//! and one without (`Pipeline::set_fast_path(false)`). Every packet must get the same
//! action and leave the same bytes and headroom; after every burst the two must count the
//! same and note the same unresolved neighbours.

use crate::{decode_bursts, snapshot};
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, DropReason, Pipeline, MAX_BURST};

/// The target on one input: panics where the two ways differ.
pub fn run(data: &[u8]) {
    let bursts = decode_bursts(data);
    if bursts.is_empty() {
        return;
    }
    let (fast_snap, general_snap) = (snapshot(), snapshot());
    let mut fast = Pipeline::new(0xfff0);
    let mut general = Pipeline::new(0xfff0);
    general.set_fast_path(false);
    for (n, burst) in bursts.iter().enumerate() {
        let port = burst[0].port;
        let bufs: Vec<TestBuf> = burst
            .iter()
            .map(|p| TestBuf::with_headroom(p.frame, p.headroom))
            .collect();
        let (mut fb, mut gb) = (bufs.clone(), bufs);
        let mut fa = [Action::Drop(DropReason::Runt); MAX_BURST];
        let mut ga = fa;
        let len = burst.len();
        fast.process(&fast_snap, port, &mut fb, &mut fa[..len]);
        general.process(&general_snap, port, &mut gb, &mut ga[..len]);
        for i in 0..len {
            assert_eq!(fa[i], ga[i], "burst {n} packet {i}: action");
            assert_eq!(fb[i].data(), gb[i].data(), "burst {n} packet {i}: bytes");
            assert_eq!(
                fb[i].headroom(),
                gb[i].headroom(),
                "burst {n} packet {i}: headroom"
            );
        }
        assert_eq!(fast.counters(), general.counters(), "burst {n}: counters");
        assert!(
            fast.unresolved().eq(general.unresolved()),
            "burst {n}: unresolved neighbours"
        );
    }
}
