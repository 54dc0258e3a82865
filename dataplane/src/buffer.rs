//! The packet-buffer trait that all packet logic is written against.
//!
//! A packet is one contiguous run of bytes (`data`) with free space in front of it
//! (`headroom`). Decapsulation advances the start (`trim_front`); encapsulation claims
//! headroom (`prepend`). The payload never moves. `Mbuf` (in the DPDK layer) and
//! [`TestBuf`] (a `Vec`-backed buffer for tests, fuzzing and benches) implement it.
//!
//! A buffer may share its bytes with other packets (a DPDK indirect or external mbuf, as
//! some NICs hand out): writing (`data_mut`, `prepend`) then first copies the packet into
//! memory of its own. [`PacketBuf::make_writable`] does that up front and says when it
//! cannot (no buffer free for the copy); the pipeline calls it once per packet.
//!
//! No method panics: every failure is a small `Copy` error the caller counts.

use thiserror::Error;

/// `prepend` asked for more bytes than the headroom holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("no headroom: needed {needed} bytes, {available} available")]
pub struct NoHeadroom {
    pub needed: usize,
    pub available: usize,
}

/// `trim_front` or `trim_back` asked for more bytes than the packet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("packet too short: trimming {requested} bytes from {len}")]
pub struct TooShort {
    pub requested: usize,
    pub len: usize,
}

/// `pad_to` asked for more bytes than the buffer has room for after the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("no tailroom: needed {needed} bytes, {available} available")]
pub struct NoTailroom {
    pub needed: usize,
    pub available: usize,
}

/// The buffer shares its bytes with other packets, and no copy of its own could be made
/// (no buffer was free): it cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the packet's buffer is shared and no copy of it could be made")]
pub struct SharedBuffer;

/// A packet buffer: contiguous data with headroom in front of it.
pub trait PacketBuf {
    /// The packet bytes, from the current start to the end.
    fn data(&self) -> &[u8];
    /// The packet bytes, mutable. A shared buffer is made writable first (see
    /// [`make_writable`](Self::make_writable)); where that fails, the slice is empty.
    fn data_mut(&mut self) -> &mut [u8];
    /// Free bytes in front of the data that `prepend` may claim.
    fn headroom(&self) -> usize;
    /// Move the start `len` bytes back and return the new front bytes (contents unspecified).
    /// A shared buffer is made writable first; where that fails, no headroom is writable
    /// and the error says `available: 0`.
    fn prepend(&mut self, len: usize) -> Result<&mut [u8], NoHeadroom>;
    /// Make the packet's bytes this buffer's own to write: a buffer that shares them with
    /// other packets is copied into one of its own (the copy may have another headroom).
    /// `Err` when no copy could be made; the packet is then unchanged and still shared.
    /// Cheap for a buffer that is already its own.
    fn make_writable(&mut self) -> Result<(), SharedBuffer> {
        Ok(())
    }
    /// Move the start `len` bytes forward (strip a header).
    fn trim_front(&mut self, len: usize) -> Result<(), TooShort>;
    /// Replace the first `old` bytes (a header to strip) with `new` bytes in front (room
    /// for the headers to write, contents unspecified) and return those: `trim_front(old)`
    /// then `prepend(new)`, in one step. `None`, with the packet's bytes and length
    /// unchanged, when the packet is shorter than `old`, the headroom left would not hold
    /// `new`, or the buffer is shared and cannot be made writable. (A shared buffer that
    /// can be is copied first, as [`make_writable`](Self::make_writable) does, whatever
    /// follows: the copy may have another headroom.)
    fn replace_front(&mut self, old: usize, new: usize) -> Option<&mut [u8]> {
        self.make_writable().ok()?;
        if old > self.len() || new > self.headroom() + old {
            return None;
        }
        self.trim_front(old).ok()?;
        self.prepend(new).ok()
    }
    /// Drop `len` bytes from the end (Ethernet padding).
    fn trim_back(&mut self, len: usize) -> Result<(), TooShort>;
    /// Append zero bytes until the packet is at least `len` bytes long (frames we build
    /// are padded to Ethernet's 60-byte minimum: not every NIC pads what it sends).
    fn pad_to(&mut self, len: usize) -> Result<(), NoTailroom>;

    /// The whole frame's length when it is the first of several segments (a DPDK mbuf
    /// chain: a frame longer than one receive buffer). The pipeline reads the first
    /// segment only, so it drops such frames as `oversize_frame`.
    fn chained_len(&self) -> Option<usize> {
        None
    }

    /// Packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True when the packet holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Headroom a [`TestBuf`] gets by default: the same as DPDK's `RTE_PKTMBUF_HEADROOM`.
pub const DEFAULT_HEADROOM: usize = 128;

/// A `Vec`-backed packet buffer for tests, fuzzing and benches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBuf {
    storage: Vec<u8>,
    start: usize,
    /// Set by [`TestBuf::chained`].
    chained: Option<usize>,
    /// Set by [`TestBuf::shared`].
    shared: bool,
}

impl TestBuf {
    /// A buffer holding `bytes` with [`DEFAULT_HEADROOM`] free bytes in front.
    pub fn new(bytes: &[u8]) -> Self {
        Self::with_headroom(bytes, DEFAULT_HEADROOM)
    }

    /// A buffer holding `bytes` with `headroom` free bytes in front.
    pub fn with_headroom(bytes: &[u8], headroom: usize) -> Self {
        let mut storage = vec![0u8; headroom + bytes.len()];
        storage[headroom..].copy_from_slice(bytes);
        Self {
            storage,
            start: headroom,
            chained: None,
            shared: false,
        }
    }

    /// The same bytes as the first segment of a chain `total` bytes long.
    pub fn chained(mut self, total: usize) -> Self {
        self.chained = Some(total);
        self
    }

    /// The same bytes in a buffer shared with other packets that cannot be copied (as an
    /// mbuf is when its pool is empty): `make_writable` fails, `data_mut` is empty and
    /// `prepend` refuses.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Replace the contents, keeping the allocation (benches reuse one buffer).
    pub fn reset(&mut self, bytes: &[u8], headroom: usize) {
        self.storage.clear();
        self.storage.resize(headroom, 0);
        self.storage.extend_from_slice(bytes);
        self.start = headroom;
        self.chained = None;
        self.shared = false;
    }
}

impl PacketBuf for TestBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..]
    }

    fn chained_len(&self) -> Option<usize> {
        self.chained
    }

    fn data_mut(&mut self) -> &mut [u8] {
        if self.shared {
            return &mut [];
        }
        &mut self.storage[self.start..]
    }

    fn headroom(&self) -> usize {
        self.start
    }

    fn make_writable(&mut self) -> Result<(), SharedBuffer> {
        if self.shared {
            return Err(SharedBuffer);
        }
        Ok(())
    }

    fn prepend(&mut self, len: usize) -> Result<&mut [u8], NoHeadroom> {
        if self.shared {
            return Err(NoHeadroom {
                needed: len,
                available: 0,
            });
        }
        if len > self.start {
            return Err(NoHeadroom {
                needed: len,
                available: self.start,
            });
        }
        self.start -= len;
        Ok(&mut self.storage[self.start..self.start + len])
    }

    fn trim_front(&mut self, len: usize) -> Result<(), TooShort> {
        let have = self.len();
        if len > have {
            return Err(TooShort {
                requested: len,
                len: have,
            });
        }
        self.start += len;
        Ok(())
    }

    fn trim_back(&mut self, len: usize) -> Result<(), TooShort> {
        let have = self.len();
        if len > have {
            return Err(TooShort {
                requested: len,
                len: have,
            });
        }
        self.storage.truncate(self.storage.len() - len);
        Ok(())
    }

    fn pad_to(&mut self, len: usize) -> Result<(), NoTailroom> {
        let want = self.start + len;
        if self.shared && self.storage.len() < want {
            return Err(NoTailroom {
                needed: want - self.storage.len(),
                available: 0,
            });
        }
        if self.storage.len() < want {
            self.storage.resize(want, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_then_trim_round_trips() {
        let mut b = TestBuf::with_headroom(&[1, 2, 3], 4);
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        assert_eq!(b.headroom(), 2);
        b.trim_front(2).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert_eq!(b.headroom(), 4);
    }

    #[test]
    fn prepend_beyond_headroom_is_refused_and_changes_nothing() {
        let mut b = TestBuf::with_headroom(&[1, 2, 3], 4);
        assert_eq!(
            b.prepend(5),
            Err(NoHeadroom {
                needed: 5,
                available: 4
            })
        );
        assert_eq!(b.data(), &[1, 2, 3]);
    }

    /// The trait's own `replace_front` (what `TestBuf`, and so the tests and fuzzing of the
    /// fast path, use): the first `old` bytes become `new` writable ones and the rest stays,
    /// or it refuses with the packet as it was: shorter than `old`, headroom too small,
    /// shared.
    #[test]
    fn replace_front_swaps_headers_or_changes_nothing() {
        let f = [1, 2, 3, 4, 5];
        for old in 0..=6 {
            for new in 0..=old + 4 {
                let mut b = TestBuf::with_headroom(&f, 3);
                let fits = old <= f.len() && new <= 3 + old;
                match b.replace_front(old, new) {
                    Some(h) => {
                        assert!(fits, "{old} by {new}");
                        assert_eq!(h.len(), new);
                        h.fill(9);
                        let mut want = vec![9; new];
                        want.extend_from_slice(&f[old..]);
                        assert_eq!(b.data(), &want[..], "{old} by {new}");
                        assert_eq!(b.headroom(), 3 + old - new, "{old} by {new}");
                    }
                    None => {
                        assert!(!fits, "{old} by {new}");
                        assert_eq!((b.data(), b.headroom()), (&f[..], 3), "{old} by {new}");
                    }
                }
            }
        }
        let mut b = TestBuf::new(&f).shared();
        assert!(b.replace_front(2, 2).is_none());
        assert_eq!((b.data(), b.headroom()), (&f[..], DEFAULT_HEADROOM));
    }

    #[test]
    fn pad_to_appends_zeros_and_never_shortens() {
        let mut b = TestBuf::with_headroom(&[1, 2, 3], 4);
        b.pad_to(6).unwrap();
        assert_eq!(b.data(), &[1, 2, 3, 0, 0, 0]);
        b.pad_to(2).unwrap();
        assert_eq!(b.data(), &[1, 2, 3, 0, 0, 0]);
        assert_eq!(b.headroom(), 4);
    }

    #[test]
    fn a_shared_buffer_that_cannot_be_copied_is_not_written() {
        let mut b = TestBuf::new(&[1, 2, 3]).shared();
        assert_eq!(b.make_writable(), Err(SharedBuffer));
        assert!(b.data_mut().is_empty());
        assert_eq!(
            b.prepend(2),
            Err(NoHeadroom {
                needed: 2,
                available: 0
            })
        );
        assert_eq!(b.data(), &[1, 2, 3]);
        assert_eq!(TestBuf::new(&[1]).make_writable(), Ok(()));
    }

    #[test]
    fn trims_beyond_length_are_refused() {
        let mut b = TestBuf::new(&[1, 2, 3]);
        assert!(b.trim_front(4).is_err());
        assert!(b.trim_back(4).is_err());
        b.trim_back(1).unwrap();
        assert_eq!(b.data(), &[1, 2]);
    }
}
