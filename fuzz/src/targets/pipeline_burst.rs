//! The whole pipeline on bursts against the fixed lab snapshot (fuzz/lab.toml), one
//! pipeline (one worker's counters and state) for the whole input.
//!
//! Input: records of a control byte, a 16-bit length and a frame
//! (`backbone_fuzz::decode_bursts`); bursts end at a change of port, at 32 packets, or
//! where the control byte says. Every verdict is checked as in `pipeline_packet`; each
//! burst's counters must match its actions exactly, and in total received = transmitted +
//! dropped + punted. GRE sequence state carries from packet to packet and burst to burst,
//! as it does in a worker.

use crate::{check_burst_counters, check_conserved, check_verdict, decode_bursts, snapshot_for};
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, DropReason, Pipeline, MAX_BURST};

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    let bursts = decode_bursts(data);
    if bursts.is_empty() {
        return;
    }
    let snap = snapshot_for(bursts.iter().flatten().map(|p| p.frame));
    let mut pipe = Pipeline::new(0xfff0);
    let mut received = 0u64;
    for burst in &bursts {
        let port = burst[0].port;
        let mut bufs: Vec<TestBuf> = burst
            .iter()
            .map(|p| TestBuf::with_headroom(p.frame, p.headroom))
            .collect();
        let mut actions = [Action::Drop(DropReason::Runt); MAX_BURST];
        let before = pipe.counters().clone();
        pipe.process(&snap, port, &mut bufs, &mut actions[..burst.len()]);
        let actions = &actions[..burst.len()];
        check_burst_counters(port, actions, &before, pipe.counters());
        for ((p, b), a) in burst.iter().zip(&bufs).zip(actions) {
            check_verdict(&snap, port, p.frame, *a, b.data(), None);
        }
        received += burst.len() as u64;
    }
    let c = pipe.counters();
    check_conserved(c);
    assert_eq!(
        c.ports.iter().map(|p| p.rx.packets).sum::<u64>(),
        received,
        "every packet received once"
    );
}
