//! `PacketBuf::replace_front` on real mbufs: the fast path strips a tunnel's headers and
//! writes the egress tunnel's in one move of the mbuf's data window, with its own
//! arithmetic on `data_off`, `data_len` and `pkt_len` (not DPDK's adj and prepend). Checked
//! against the trait's contract, for every strip and prepend length around the limits: the
//! bytes after the stripped ones stay where they were, the new front is writable and the
//! packet's length (`pkt_len`) moves with the segment's, or nothing changes at all. One EAL
//! per process: one test.

#![cfg(feature = "dpdk")]

use dataplane::buffer::PacketBuf;
use dataplane::dpdk::{Eal, Mbuf, Mempool};

/// A frame of `len` bytes, each its own position (mod 251), so that any shift shows.
fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// An mbuf holding `bytes` after `extra` more bytes of headroom than the pool's default.
fn mbuf(pool: &Mempool<'_>, bytes: &[u8], extra: usize) -> Mbuf {
    let mut with = vec![0xee; extra];
    with.extend_from_slice(bytes);
    let mut m = pool.alloc_with(&with).expect("an mbuf");
    m.trim_front(extra).expect("the junk in front");
    m
}

#[test]
fn replace_front_moves_the_window_or_changes_nothing() {
    let args = pipeline_config::eal_args_no_nic(&format!("mbufwin{}", std::process::id()));
    let eal = Eal::init(&args).expect("EAL starts");
    let pool = Mempool::new(&eal, "mbufwin", 511, 0, Mempool::default_data_room()).expect("pool");
    let base = pool.alloc().expect("an mbuf").headroom();
    let mut cases = 0;
    for len in [0usize, 1, 20, 34, 62, 134, 1500] {
        let f = frame(len);
        for extra in [0usize, 3, 40] {
            let room = base + extra;
            for old in [0usize, 1, 14, 34, 42, len, len + 1] {
                for new in [0usize, 1, 38, 42, room, room + old, room + old + 1] {
                    cases += 1;
                    let what = format!("{len}-byte frame, headroom {room}, replace {old} by {new}");
                    let mut m = mbuf(&pool, &f, extra);
                    assert_eq!(m.headroom(), room, "{what}");
                    let fits = old <= len && new <= room + old;
                    match m.replace_front(old, new) {
                        Some(h) => {
                            assert!(fits, "{what}: taken, but it does not fit");
                            assert_eq!(h.len(), new, "{what}: the new front's length");
                            h.fill(0xa5);
                            let d = m.data();
                            assert_eq!(d.len(), len - old + new, "{what}: length");
                            assert!(d[..new].iter().all(|&b| b == 0xa5), "{what}: front");
                            assert_eq!(&d[new..], &f[old..], "{what}: the rest");
                            assert_eq!(m.headroom(), room + old - new, "{what}: headroom");
                            // The packet's length (pkt_len) moved with the segment's.
                            assert_eq!(m.segments(), 1, "{what}: one segment");
                            assert_eq!(m.pkt_len() as usize, len - old + new, "{what}: pkt_len");
                        }
                        None => {
                            assert!(!fits, "{what}: refused, but it fits");
                            assert_eq!(m.data(), &f[..], "{what}: unchanged");
                            assert_eq!(m.headroom(), room, "{what}: headroom unchanged");
                            assert_eq!(m.pkt_len() as usize, len, "{what}: pkt_len unchanged");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 7 * 3 * 7 * 7);

    // Lengths past what a 16-bit window field holds: refused, nothing changed.
    let f = frame(134);
    let mut m = mbuf(&pool, &f, 0);
    for (old, new) in [(1 << 16, 0), (0, 1 << 16), (usize::MAX, 1), (1, usize::MAX)] {
        assert!(m.replace_front(old, new).is_none(), "{old} by {new}");
        assert_eq!((m.data(), m.headroom()), (&f[..], base), "{old} by {new}");
    }
    drop(m);

    // A packet whose bytes another mbuf shares: copied first, the other left as it was.
    let f = frame(134);
    let mut original = mbuf(&pool, &f, 0);
    let mut shared = original.clone_indirect(&pool).expect("an indirect mbuf");
    let h = shared.replace_front(38, 42).expect("copied, then moved");
    h.fill(0x5a);
    assert_eq!(
        (shared.len(), shared.pkt_len()),
        (134 - 38 + 42, 134 - 38 + 42)
    );
    assert!(shared.data()[..42].iter().all(|&b| b == 0x5a));
    assert_eq!(&shared.data()[42..], &f[38..]);
    assert_eq!(original.data(), &f[..], "the other holder's bytes");
    assert!(original.replace_front(0, 0).is_some());
    drop((original, shared));
    assert_eq!(pool.in_use(), 0, "every mbuf back in the pool");
}
