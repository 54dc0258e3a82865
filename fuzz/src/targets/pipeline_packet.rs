//! The whole pipeline on one packet against the fixed lab snapshot (fuzz/lab.toml).
//!
//! Input: one control byte (bit 0: the port it arrives on; bit 7: a small headroom, see
//! `backbone_fuzz::decode_control`), then the frame. Every verdict is checked by
//! `backbone_fuzz::check_verdict` (output well-formed, on a port the snapshot allows, the
//! inner packet intact, BCP 38 held; exactly the named drop counted) and the counters must
//! add up: received = transmitted + dropped + punted.

use crate::{check_burst_counters, check_verdict, decode_packet, snapshot_for};
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, DropReason, Pipeline};

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    let Some(pkt) = decode_packet(data) else {
        return;
    };
    let snap = snapshot_for([pkt.frame]);
    let mut pipe = Pipeline::new(0x1000);
    let mut bufs = [TestBuf::with_headroom(pkt.frame, pkt.headroom)];
    let mut actions = [Action::Drop(DropReason::Runt)];
    let before = pipe.counters().clone();
    pipe.process(&snap, pkt.port, &mut bufs, &mut actions);
    let after = pipe.counters();
    check_burst_counters(pkt.port, &actions, &before, after);
    check_verdict(
        &snap,
        pkt.port,
        pkt.frame,
        actions[0],
        bufs[0].data(),
        Some((&before, after)),
    );
}
