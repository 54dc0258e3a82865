//! Reading and writing classic pcap files (microsecond timestamps, Ethernet link type).

use std::io::{self, Read, Write};
use std::path::Path;

const MAGIC_USEC: u32 = 0xa1b2_c3d4;
const MAGIC_NSEC: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

/// Write `packets` as an Ethernet pcap file.
pub fn write(path: &Path, packets: &[Vec<u8>]) -> io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_USEC.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // version major
    out.extend_from_slice(&4u16.to_le_bytes()); // version minor
    out.extend_from_slice(&0i32.to_le_bytes()); // timezone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        let len = u32::try_from(p.len()).map_err(|_| io::Error::other("packet too long"))?;
        let ts = u32::try_from(i).unwrap_or(u32::MAX);
        out.extend_from_slice(&(ts / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(ts % 1_000_000).to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    std::fs::File::create(path)?.write_all(&out)
}

/// Read every packet of a pcap file (either byte order, micro- or nanosecond stamps).
pub fn read(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    parse(&data)
}

/// Parse the bytes of a pcap file.
pub fn parse(data: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let header = data
        .get(..24)
        .ok_or_else(|| bad("pcap: short global header"))?;
    let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let little = match magic_le {
        MAGIC_USEC | MAGIC_NSEC => true,
        m if m.swap_bytes() == MAGIC_USEC || m.swap_bytes() == MAGIC_NSEC => false,
        _ => return Err(bad("pcap: bad magic")),
    };
    let u32_at = |b: &[u8], at: usize| -> io::Result<u32> {
        let s: [u8; 4] = b
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("pcap: truncated"))?;
        Ok(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let mut packets = Vec::new();
    let mut at = 24;
    while at < data.len() {
        let incl = usize::try_from(u32_at(data, at + 8)?).map_err(|_| bad("pcap: length"))?;
        let start = at + 16;
        let body = data
            .get(start..start + incl)
            .ok_or_else(|| bad("pcap: truncated record"))?;
        packets.push(body.to_vec());
        at = start + incl;
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_then_read_round_trips() {
        let dir = crate::scratch_dir("pcap-unit");
        let path = dir.join("x.pcap");
        let pkts = vec![vec![1u8, 2, 3], vec![], vec![0xff; 1500]];
        super::write(&path, &pkts).unwrap();
        assert_eq!(super::read(&path).unwrap(), pkts);
    }

    #[test]
    fn truncated_files_are_errors() {
        assert!(super::parse(&[0xd4, 0xc3, 0xb2]).is_err());
        let mut ok = Vec::new();
        ok.extend_from_slice(&super::MAGIC_USEC.to_le_bytes());
        ok.extend_from_slice(&[0u8; 20]);
        ok.extend_from_slice(&[0u8; 8]);
        ok.extend_from_slice(&10u32.to_le_bytes());
        ok.extend_from_slice(&10u32.to_le_bytes());
        ok.extend_from_slice(&[1, 2]);
        assert!(super::parse(&ok).is_err());
    }
}
