//! Header parsing: Ethernet + IPv4 + GRE (key, sequence number and checksum) + inner IPv4,
//! through the views (`new_checked` and the accessors the pipeline reads), per header stack.
//!
//! `cargo bench -p backbone-benches --bench parse`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use backbone_benches::tunnel_frame;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::wire::{EtherType, EthernetAddress, EthernetFrame, GrePacket, GreRepr, Ipv4Packet};

/// What the pipeline reads from a header stack, folded into one value so nothing is
/// optimised away.
#[inline]
fn parse_stack(frame: &[u8], check_ipv4: bool, check_gre: bool) -> Option<u64> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let dst = eth.dst_addr();
    let outer = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if check_ipv4 && !outer.verify_checksum() {
        return None;
    }
    let gre = GrePacket::new_checked(outer.payload()).ok()?;
    if gre.version() != 0 || gre.forbidden_bits_set() {
        return None;
    }
    if check_gre && gre.checksum_present() && !gre.verify_checksum() {
        return None;
    }
    let inner = Ipv4Packet::new_checked(gre.payload()).ok()?;
    if check_ipv4 && !inner.verify_checksum() {
        return None;
    }
    Some(
        u64::from(dst.0[5])
            ^ u64::from(u32::from(outer.src_addr()))
            ^ u64::from(u32::from(outer.dst_addr())) << 8
            ^ u64::from(outer.protocol().0)
            ^ u64::from(outer.ttl())
            ^ u64::from(outer.dscp())
            ^ u64::from(gre.protocol_type().0)
            ^ u64::from(gre.key().unwrap_or(0)) << 16
            ^ u64::from(gre.sequence().unwrap_or(0))
            ^ u64::from(u32::from(inner.src_addr())) << 24
            ^ u64::from(u32::from(inner.dst_addr()))
            ^ u64::from(inner.ttl())
            ^ u64::from(inner.total_len()),
    )
}

fn parse(c: &mut Criterion) {
    // A realistic tunnelled frame: GRE with key, sequence number and checksum, carrying a
    // 1400-byte inner packet (1458 bytes on the wire).
    let frame = tunnel_frame(
        EthernetAddress([0x02, 0, 0, 0, 0, 1]),
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(192, 0, 2, 1),
        Some(GreRepr {
            protocol_type: EtherType::IPV4,
            key: Some(0xc0ffee),
            sequence: Some(7),
            checksum: true,
        }),
        Ipv4Addr::new(10, 1, 0, 5),
        Ipv4Addr::new(10, 2, 0, 9),
        1400 - 28,
    );
    assert!(
        parse_stack(&frame, true, true).is_some(),
        "the frame parses"
    );

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eth_ipv4_gre_ipv4/views", |b| {
        b.iter(|| parse_stack(black_box(&frame), false, false))
    });
    g.bench_function("eth_ipv4_gre_ipv4/views+ipv4_checksums", |b| {
        b.iter(|| parse_stack(black_box(&frame), true, false))
    });
    // The GRE checksum covers the 1400-byte payload: this is the cost of C on receipt.
    g.bench_function("eth_ipv4_gre_ipv4/views+ipv4+gre_checksums_1400B", |b| {
        b.iter(|| parse_stack(black_box(&frame), true, true))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = parse
}
criterion_main!(benches);
