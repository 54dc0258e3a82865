//! A pcapng file writer, enough for `ctl capture`: one section, interfaces with a name
//! and nanosecond timestamps, enhanced packet blocks with a direction flag and a comment
//! (the pcapng specification, draft-ietf-opsawg-pcapng; little-endian).

use std::io::Write;

/// Block types.
const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 1;
const ENHANCED_PACKET: u32 = 6;
/// Option codes.
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// A packet to write.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Index into the interfaces given to [`write`].
    pub interface: u32,
    /// Received (inbound) or sent (outbound).
    pub inbound: bool,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u128,
    /// The bytes captured.
    pub data: &'a [u8],
    /// The packet's whole length (at least `data.len()`).
    pub len: u32,
    pub comment: &'a str,
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// A block: type, total length, body, total length again.
fn block(w: &mut impl Write, kind: u32, body: &[u8]) -> std::io::Result<()> {
    let total = (body.len() + 12) as u32;
    w.write_all(&kind.to_le_bytes())?;
    w.write_all(&total.to_le_bytes())?;
    w.write_all(body)?;
    w.write_all(&total.to_le_bytes())
}

/// Write a section with `interfaces` (`(name, link type)`) and `packets`.
pub fn write(
    w: &mut impl Write,
    interfaces: &[(String, u16)],
    packets: &[Packet<'_>],
) -> std::io::Result<()> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes()); // byte-order magic
    b.extend_from_slice(&1u16.to_le_bytes()); // version 1.0
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not given
    option(&mut b, OPT_COMMENT, b"written by backbone ctl capture");
    option(&mut b, OPT_END, &[]);
    block(w, SECTION_HEADER, &b)?;
    for (name, link) in interfaces {
        let mut b = Vec::new();
        b.extend_from_slice(&link.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // snap length: none
        option(&mut b, IF_NAME, name.as_bytes());
        option(&mut b, IF_TSRESOL, &[9]); // 10^-9 s
        option(&mut b, OPT_END, &[]);
        block(w, INTERFACE_DESCRIPTION, &b)?;
    }
    for p in packets {
        let mut b = Vec::with_capacity(p.data.len() + 64 + p.comment.len());
        b.extend_from_slice(&p.interface.to_le_bytes());
        let t = u64::try_from(p.time_ns).unwrap_or(u64::MAX);
        b.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(t as u32).to_le_bytes());
        b.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&p.len.max(p.data.len() as u32).to_le_bytes());
        b.extend_from_slice(p.data);
        pad(&mut b);
        // Direction, bits 0-1: 01 inbound, 10 outbound.
        let flags: u32 = if p.inbound { 1 } else { 2 };
        option(&mut b, EPB_FLAGS, &flags.to_le_bytes());
        if !p.comment.is_empty() {
            option(&mut b, OPT_COMMENT, p.comment.as_bytes());
        }
        option(&mut b, OPT_END, &[]);
        block(w, ENHANCED_PACKET, &b)?;
    }
    Ok(())
}
