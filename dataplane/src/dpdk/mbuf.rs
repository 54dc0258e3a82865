//! An owning packet buffer, and a burst of them.

use super::mempool::Mempool;
use crate::buffer::{NoHeadroom, NoTailroom, PacketBuf, SharedBuffer, TooShort};
use std::mem::MaybeUninit;
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};

/// The most packets one burst holds.
pub const BURST_MAX: usize = 32;

/// One packet in DPDK memory, owned: freed on drop. `Send`, not `Sync`, not `Clone`.
///
/// The [`PacketBuf`] view covers the first segment; the RX path accepts single-segment
/// packets only (no scatter), so for received packets that is the whole packet.
///
/// The packet's bytes may live in a buffer shared with other mbufs: an indirect mbuf
/// (attached to another's buffer, as [`Mbuf::clone_indirect`] makes them) or an external
/// one (some PMDs, mlx5's multi-packet RQ for one, hand those out), or a direct mbuf that
/// indirect ones are attached to. Such bytes are never written in place: `data_mut`,
/// `prepend` and `append` first copy the packet into a fresh mbuf of its own (see
/// [`PacketBuf::make_writable`]). The check is one look at the mbuf's flags and reference
/// count, in the cache line those calls read anyway.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

/// The mbuf's buffer belongs to another mbuf (indirect) or to no mbuf (external).
const ATTACHED: u64 = dpdk_sys::RTE_MBUF_F_INDIRECT | dpdk_sys::RTE_MBUF_F_EXTERNAL;

/// Read a reference count that DPDK updates atomically (RTE_MBUF_REFCNT_ATOMIC).
///
/// # Safety
/// `count` must point to a live, 2-byte aligned mbuf or shared-info reference count.
unsafe fn load_refcnt(count: *mut u16) -> u16 {
    // SAFETY: per the contract the pointer is valid and aligned for an AtomicU16; DPDK
    // only changes the count with atomic operations, so an atomic load is race-free.
    // Acquire: a count of one means every other holder has released the buffer, and their
    // reads of it happen before our writes.
    unsafe { AtomicU16::from_ptr(count) }.load(Ordering::Acquire)
}

// SAFETY: an Mbuf is the only handle to its rte_mbuf; moving it to another thread moves
// the ownership. Dropping it there puts it back through its pool's ops on a thread other
// than the one that took it, while other threads get and put on the same pool: that needs
// multi-producer/multi-consumer ops (`ring_mp_mc`, EAL's default, or a hardware pool), and
// `Mempool::new` refuses the single-producer or single-consumer ones (`ring_sp_sc`,
// `ring_sp_mc`, `ring_mp_sc`). The per-lcore cache a put may go through belongs to the
// calling lcore alone (a thread without an lcore bypasses it). Reference counts of shared
// buffers (indirect and external mbufs) are atomic (RTE_MBUF_REFCNT_ATOMIC, set in this
// DPDK build), so a buffer shared across threads is released exactly once.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must point to a valid mbuf allocated from a pool of the running EAL, with a
    /// reference count of one, that nothing else will use or free. Its buffer may be shared
    /// with other mbufs (indirect, external): writes copy it first.
    pub unsafe fn from_raw(ptr: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(ptr)
    }

    /// A second packet over this one's bytes: an indirect mbuf from `pool`, attached to
    /// this mbuf's buffer (`rte_pktmbuf_attach`), as multicast code makes them and as some
    /// PMDs hand them out. Both are then shared: the first write through either copies its
    /// packet into a buffer of its own, and the other keeps the bytes as they were.
    /// `None` when `pool` is empty or this packet is a chain (the clone would cover its
    /// first segment only).
    pub fn clone_indirect(&self, pool: &Mempool<'_>) -> Option<Mbuf> {
        if self.segments() != 1 {
            return None;
        }
        let clone = pool.alloc()?;
        // SAFETY: `clone` is a fresh direct mbuf with a reference count of one and no
        // data, which is what attach requires; self is a valid single-segment mbuf. Attach
        // takes a reference on the buffer (on its direct mbuf, or its external shared
        // info), which the clone gives back when it is freed.
        unsafe { dpdk_sys::rte_pktmbuf_attach(clone.0.as_ptr(), self.0.as_ptr()) };
        Some(clone)
    }

    /// Whether another mbuf may read or write this packet's bytes (any segment): see the
    /// type's documentation.
    #[inline]
    pub fn is_shared(&self) -> bool {
        let m = self.0.as_ptr();
        // SAFETY: fields of our own valid mbuf, read in place: no reference to the whole
        // mbuf, whose reference count other holders of its buffer may update meanwhile.
        let (segs, flags) = unsafe { ((*m).nb_segs, (*m).ol_flags) };
        if segs == 1 && flags & ATTACHED == 0 {
            // SAFETY: the reference count of our own valid mbuf.
            return unsafe { load_refcnt(addr_of_mut!((*m).refcnt)) } != 1;
        }
        self.any_segment_shared()
    }

    #[cold]
    fn any_segment_shared(&self) -> bool {
        let mut seg = self.0.as_ptr();
        while !seg.is_null() {
            // SAFETY: seg is our mbuf or a segment chained to it, valid while we own it;
            // its fields are read in place, as in is_shared.
            let (flags, shinfo, next) = unsafe { ((*seg).ol_flags, (*seg).shinfo, (*seg).next) };
            let count = if flags & dpdk_sys::RTE_MBUF_F_EXTERNAL != 0 {
                // SAFETY: an external mbuf's shinfo points to its buffer's shared info,
                // alive while the mbuf holds its reference.
                unsafe { addr_of_mut!((*shinfo).refcnt) }
            } else if flags & dpdk_sys::RTE_MBUF_F_INDIRECT != 0 {
                // SAFETY: an indirect mbuf's buffer sits inside the direct mbuf that owns
                // it, kept alive by the reference this one holds.
                unsafe { addr_of_mut!((*dpdk_sys::rte_mbuf_from_indirect(seg)).refcnt) }
            } else {
                // SAFETY: a segment of ours, as above.
                unsafe { addr_of_mut!((*seg).refcnt) }
            };
            // SAFETY: the reference count of a live mbuf or shared info, chosen above.
            if unsafe { load_refcnt(count) } != 1 {
                return true;
            }
            seg = next;
        }
        false
    }

    /// Make the bytes ours before writing them: see [`PacketBuf::make_writable`].
    #[inline]
    fn writable(&mut self) -> Result<(), SharedBuffer> {
        if self.is_shared() {
            return self.unshare();
        }
        Ok(())
    }

    /// Replace the packet with a copy in a fresh mbuf (the whole chain), and free our
    /// reference to the shared one. The copy comes from the pool of the mbuf that holds
    /// the bytes (an indirect mbuf's own pool may hold headers only), else from ours; it
    /// has that pool's default headroom.
    #[cold]
    fn unshare(&mut self) -> Result<(), SharedBuffer> {
        let m = self.0.as_ptr();
        // SAFETY: a field of our own valid mbuf, read in place.
        let pool = if unsafe { (*m).ol_flags } & dpdk_sys::RTE_MBUF_F_INDIRECT != 0 {
            // SAFETY: as in any_segment_shared: the direct mbuf behind an indirect one
            // lives while we hold our reference.
            unsafe { (*dpdk_sys::rte_mbuf_from_indirect(m)).pool }
        } else {
            // SAFETY: as above.
            unsafe { (*m).pool }
        };
        // SAFETY: m is a valid mbuf (chain) we own and pool a valid pktmbuf pool; the copy
        // only reads m, and a non-null result is a new mbuf that we alone hold.
        let copy = unsafe { dpdk_sys::rte_pktmbuf_copy(m, pool, 0, u32::MAX) };
        let copy = NonNull::new(copy).ok_or(SharedBuffer)?;
        let shared = std::mem::replace(&mut self.0, copy);
        // SAFETY: our reference to the shared packet, released exactly once; the other
        // holders keep theirs.
        unsafe { dpdk_sys::rte_pktmbuf_free(shared.as_ptr()) };
        Ok(())
    }

    /// Give up ownership; the caller must free or transmit the pointer.
    pub fn into_raw(self) -> NonNull<dpdk_sys::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf (constructor contract); shared borrow of self.
        unsafe { self.0.as_ref() }
    }

    /// Segments in the chain.
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Whole packet length across segments.
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// The input port DPDK recorded on receive.
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Append `bytes` at the end of the last segment (copying a shared packet first).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), NoHeadroom> {
        let refused = NoHeadroom {
            needed: bytes.len(),
            available: 0,
        };
        let len = u16::try_from(bytes.len()).map_err(|_| refused)?;
        self.writable().map_err(|_| refused)?;
        // SAFETY: we own the mbuf; rte_pktmbuf_append returns null when the tailroom is too
        // small, else a pointer to `len` writable bytes inside the last segment.
        let dst = unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), len) };
        if dst.is_null() {
            return Err(refused);
        }
        // SAFETY: dst points to `len` bytes of this mbuf's buffer, which no other mbuf
        // shares (checked above), disjoint from `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.cast::<u8>(), bytes.len()) };
        Ok(())
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nothing else refers to it; it is freed exactly once.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// The first segment's data: where it starts in the buffer, and how long it is. The
/// pipeline moves these on every packet (strip, prepend): plain field arithmetic here,
/// no call into DPDK's C functions, whose checks the callers already made.
impl Mbuf {
    /// `(data_off, data_len)`.
    #[inline(always)]
    fn window(&self) -> (u16, u16) {
        let m = self.0.as_ptr();
        // SAFETY: fields of our own valid mbuf, read in place (no reference to the mbuf,
        // whose reference count another holder of a shared buffer may update meanwhile).
        unsafe { ((*m).data_off, (*m).data_len) }
    }

    /// The first byte of the buffer.
    #[inline(always)]
    fn buf_addr(&self) -> *mut u8 {
        // SAFETY: as in `window`.
        unsafe { (*self.0.as_ptr()).buf_addr.cast::<u8>() }
    }

    /// Move the data window: `data_off` to `off`, `data_len` by `grow` (signed), and
    /// `pkt_len` with it.
    ///
    /// # Safety
    /// The new window must lie within the first segment's buffer (`off + data_len <=
    /// buf_len`), and only a single-segment packet's end may move.
    #[inline(always)]
    unsafe fn set_window(&mut self, off: u16, len: u16) {
        let m = self.0.as_ptr();
        // SAFETY: we own the mbuf (&mut self); the caller keeps the window in the buffer.
        unsafe {
            let delta = i32::from(len) - i32::from((*m).data_len);
            (*m).data_off = off;
            (*m).data_len = len;
            (*m).pkt_len = (*m).pkt_len.wrapping_add_signed(delta);
        }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn chained_len(&self) -> Option<usize> {
        let m = self.0.as_ptr();
        // SAFETY: as in `window`.
        let (segs, total) = unsafe { ((*m).nb_segs, (*m).pkt_len) };
        (segs > 1).then_some(total as usize)
    }

    #[inline]
    fn data(&self) -> &[u8] {
        let (off, len) = self.window();
        // SAFETY: the first segment's data_len bytes from buf_addr + data_off are
        // initialised packet bytes of this mbuf (DPDK keeps the window inside the buffer,
        // and so does every change here), borrowed for as long as self is.
        unsafe {
            std::slice::from_raw_parts(self.buf_addr().add(usize::from(off)), usize::from(len))
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        if self.writable().is_err() {
            return &mut [];
        }
        let (off, len) = self.window();
        // SAFETY: as in `data`; no other mbuf shares the buffer (checked above), and
        // `&mut self` gives exclusive access to those bytes.
        unsafe {
            std::slice::from_raw_parts_mut(self.buf_addr().add(usize::from(off)), usize::from(len))
        }
    }

    #[inline]
    fn headroom(&self) -> usize {
        usize::from(self.window().0)
    }

    #[inline]
    fn make_writable(&mut self) -> Result<(), SharedBuffer> {
        self.writable()
    }

    #[inline]
    fn prepend(&mut self, len: usize) -> Result<&mut [u8], NoHeadroom> {
        if self.writable().is_err() {
            return Err(NoHeadroom {
                needed: len,
                available: 0,
            });
        }
        let (off, data_len) = self.window();
        let grown = u16::try_from(len)
            .ok()
            .filter(|&l| l <= off)
            .and_then(|l| data_len.checked_add(l).map(|n| (l, n)));
        let Some((l16, new_len)) = grown else {
            return Err(NoHeadroom {
                needed: len,
                available: usize::from(off),
            });
        };
        // SAFETY: the window moves back by len <= data_off: it starts at or after the
        // buffer's first byte, and ends where it ended.
        unsafe { self.set_window(off - l16, new_len) };
        // SAFETY: the `len` bytes before the old start are this mbuf's buffer, which no
        // other mbuf shares (checked above), exclusively borrowed via self.
        Ok(unsafe {
            std::slice::from_raw_parts_mut(self.buf_addr().add(usize::from(off - l16)), len)
        })
    }

    #[inline]
    fn replace_front(&mut self, old: usize, new: usize) -> Option<&mut [u8]> {
        self.writable().ok()?;
        let (off, data_len) = self.window();
        let (old, new) = (u16::try_from(old).ok()?, u16::try_from(new).ok()?);
        // The new start, off + old - new, must not fall before the buffer's first byte.
        let start = off.checked_add(old)?.checked_sub(new)?;
        if old > data_len {
            return None;
        }
        // SAFETY: the window's end does not move (start + new length = off + data_len,
        // within the buffer as before), and its start is at or after the buffer's first
        // byte (checked above).
        unsafe { self.set_window(start, data_len - old + new) };
        // SAFETY: the `new` bytes from the new start are this mbuf's buffer, which no other
        // mbuf shares (checked above), exclusively borrowed via self.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.buf_addr().add(usize::from(start)),
                usize::from(new),
            )
        })
    }

    #[inline]
    fn trim_front(&mut self, len: usize) -> Result<(), TooShort> {
        let (off, data_len) = self.window();
        let Some(l16) = u16::try_from(len).ok().filter(|&l| l <= data_len) else {
            return Err(TooShort {
                requested: len,
                len: usize::from(data_len),
            });
        };
        // SAFETY: the window's start moves forward by at most its length: it stays inside
        // the buffer, and its end does not move.
        unsafe { self.set_window(off + l16, data_len - l16) };
        Ok(())
    }

    #[inline]
    fn trim_back(&mut self, len: usize) -> Result<(), TooShort> {
        let (off, data_len) = self.window();
        let one_segment = self.segments() == 1;
        let Some(l16) = u16::try_from(len)
            .ok()
            .filter(|&l| l <= data_len && one_segment)
        else {
            return Err(TooShort {
                requested: len,
                len: usize::from(data_len),
            });
        };
        // SAFETY: a single segment's window shrinks at its end by at most its length.
        unsafe { self.set_window(off, data_len - l16) };
        Ok(())
    }

    fn pad_to(&mut self, len: usize) -> Result<(), NoTailroom> {
        let have = self.len();
        if have >= len {
            return Ok(());
        }
        let zeros = [0u8; 64];
        let mut missing = len - have;
        while missing > 0 {
            let n = missing.min(zeros.len());
            self.append(&zeros[..n]).map_err(|_| NoTailroom {
                needed: len - have,
                available: 0,
            })?;
            missing -= n;
        }
        Ok(())
    }
}

/// Up to [`BURST_MAX`] owned mbufs: what one RX call returns and one TX call takes.
///
/// Derefs to `[Mbuf]`. Dropping the burst frees the mbufs still in it.
pub struct Burst {
    bufs: [MaybeUninit<Mbuf>; BURST_MAX],
    len: usize,
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len).finish()
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    /// An empty burst.
    pub fn new() -> Self {
        Burst {
            bufs: [const { MaybeUninit::uninit() }; BURST_MAX],
            len: 0,
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the burst holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no more packets fit.
    pub fn is_full(&self) -> bool {
        self.len == BURST_MAX
    }

    /// Add a packet at the end; hands it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST_MAX {
            return Err(m);
        }
        self.bufs[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// Remove and return the last packet.
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slots below the old len are initialised; we take this one out and lower
        // len first, so it is never read or dropped again through the burst.
        Some(unsafe { self.bufs[self.len].assume_init_read() })
    }

    /// Take every packet out, front to back; what the iterator does not yield is freed
    /// when it drops.
    pub fn drain(&mut self) -> Drain<'_> {
        let len = self.len;
        // The slots now belong to the iterator: the burst is empty from here on.
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            len,
        }
    }

    /// Free every packet held, with one call into DPDK (`rte_pktmbuf_free_bulk`, which
    /// returns mbufs of one pool to it together) instead of one call per packet.
    pub fn clear(&mut self) {
        let len = self.len;
        if len == 0 {
            return;
        }
        // The burst forgets the packets before DPDK frees them: none is read or freed
        // through it again.
        self.len = 0;
        // SAFETY: the first `len` slots hold valid mbufs that this burst owns (len counts
        // them) and nothing else refers to; the pointer array has Mbuf's layout (Mbuf is
        // repr(transparent) over NonNull<rte_mbuf>). DPDK frees each exactly once.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.as_mut_ptr(), len as u32) }
    }

    /// Pointer to the slot array, for RX to fill after `len`.
    pub(crate) fn spare_ptr(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        let spare = BURST_MAX - self.len;
        // Mbuf is repr(transparent) over NonNull<rte_mbuf>, which has the layout of *mut rte_mbuf.
        let p = self.bufs[self.len..]
            .as_mut_ptr()
            .cast::<*mut dpdk_sys::rte_mbuf>();
        (p, spare)
    }

    /// Record that RX initialised `n` more slots after `len`.
    ///
    /// # Safety
    /// The `n` slots after `len` must hold valid non-null mbufs now owned by this burst.
    pub(crate) unsafe fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= BURST_MAX);
        self.len += n;
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut *mut dpdk_sys::rte_mbuf {
        self.bufs.as_mut_ptr().cast::<*mut dpdk_sys::rte_mbuf>()
    }

    /// Forget the first `n` packets (TX took them) and move the rest to the front.
    ///
    /// # Safety
    /// The first `n` packets must have been handed to DPDK, which now owns them.
    pub(crate) unsafe fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        let rest = self.len - n;
        if rest == 0 {
            // Everything went (the common case): nothing to move.
            self.len = 0;
            return;
        }
        // SAFETY: slots n..len are initialised; copying them to 0..rest moves ownership
        // (the old slots are no longer counted by len), regions may overlap so use copy.
        unsafe {
            std::ptr::copy(self.bufs.as_ptr().add(n), self.bufs.as_mut_ptr(), rest);
        }
        self.len = rest;
    }
}

/// The packets of a [`Burst`], front to back (see [`Burst::drain`]).
#[derive(Debug)]
pub struct Drain<'b> {
    burst: &'b mut Burst,
    next: usize,
    len: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.len {
            return None;
        }
        let i = self.next;
        self.next += 1;
        // SAFETY: slots below `len` were initialised when the drain began and each is read
        // exactly once (next only grows); the burst's own len is 0, so it never reads them.
        Some(unsafe { self.burst.bufs[i].assume_init_read() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len - self.next, Some(self.len - self.next))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}

impl std::ops::Deref for Burst {
    type Target = [Mbuf];
    fn deref(&self) -> &[Mbuf] {
        // SAFETY: the first len slots are initialised Mbufs; MaybeUninit<T> has T's layout.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().cast::<Mbuf>(), self.len) }
    }
}

impl std::ops::DerefMut for Burst {
    fn deref_mut(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in deref, with exclusive access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
    }
}
