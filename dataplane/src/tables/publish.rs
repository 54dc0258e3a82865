//! Publishing immutable tables to the workers, and freeing the old ones on the control thread.
//!
//! The control thread owns one [`Publisher`]; each worker owns one [`Reader`] the publisher
//! made for it. Generations come from the tables themselves ([`Versioned`]) and must increase
//! with every publication ([`Publisher::publish`] panics otherwise: the snapshot builder
//! numbers them).
//!
//! The protocol:
//!
//! - **Publication.** [`Publisher::publish`] keeps an `Arc` of the new generation and of every
//!   older one it has not reclaimed yet, then offers the new one to each reader: it puts it in
//!   the reader's mailbox (the offer the reader had not taken, if any, comes back) and then
//!   raises the reader's `offered` word.
//! - **Reading.** A worker calls [`Reader::refresh`] at every burst boundary, its quiescent
//!   point. When nothing was published that costs one atomic load of its own `offered` word.
//!   When a newer generation is offered, it takes the offer out of its mailbox with a
//!   `try_lock` (if the control thread is in there, it tries again next time: it never waits),
//!   notes in the mailbox the generation it took, drops the `Arc` it held (never the last one:
//!   the publisher still retains that generation) and reports, in `holds`, the generation it now
//!   holds. Between two refreshes it reads one snapshot, never a mix of two.
//! - **Reclamation.** [`Publisher::reclaim`] runs on the control thread after every publication
//!   and on every tick. Under each reader's mailbox lock it reads the generation the reader
//!   reports and the one it last took (taken, maybe not reported yet); it keeps those and the
//!   current one, and drops every other retained generation. Those drops are the only places a
//!   table can be freed: every free happens on the control thread, never inside a burst.
//! - **Bounds.** A reader pins at most two generations (the one it reports and the one it last
//!   took), so at most `2 × readers` old generations are alive however long a reader stalls:
//!   a stalled worker keeps its own snapshot alive and nothing newer ([`Publisher::retired`]).
//! - **Readers that go.** A dropped [`Reader`] lets go of its snapshot, then says so; the next
//!   reclamation forgets it.
//!
//! The orderings: a reader's drop of its old `Arc` comes before its `Release` store of `holds`,
//! which the publisher reads with `Acquire` before dropping that generation, so the publisher's
//! drop is the last one. `offered` is stored with `Release` after the offer went in and loaded
//! with `Acquire`, so a reader that sees it takes the lock after the offer. The mailbox mutex
//! orders takes against offers and reclamation. The `loom_model` tests at the end check the
//! protocol over every interleaving (`scripts/loom.sh` builds with `--cfg loom`, which swaps
//! the `sync` primitives below for loom's).
//!
//! Why a mailbox per reader rather than one shared cell every worker loads from: with a
//! shared cell the publisher cannot tell which generation a reader is about to take, so it
//! must keep every generation newer than the oldest one reported (a stalled worker then pins
//! everything published after it), and a cell that hands out borrowed references (arc-swap's
//! guards) can make a worker's release the last one. Here the publisher puts each offer in
//! and knows each take, so it can free exactly what no reader can hold.

use std::collections::VecDeque;
use std::fmt;

#[cfg(loom)]
mod sync {
    pub use loom::sync::atomic::{AtomicU64, Ordering};
    pub use loom::sync::{Arc, Mutex, MutexGuard};
    pub use std::sync::TryLockError;
}
#[cfg(not(loom))]
mod sync {
    pub use std::sync::atomic::{AtomicU64, Ordering};
    pub use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
}

pub use sync::Arc;
use sync::{AtomicU64, Mutex, MutexGuard, Ordering, TryLockError};

/// Something published by generation.
pub trait Versioned {
    /// This version's generation; each publication's is greater than the one before.
    fn generation(&self) -> u64;
}

impl Versioned for super::Snapshot {
    fn generation(&self) -> u64 {
        super::Snapshot::generation(self)
    }
}

/// What a reader reports in `holds` once it is gone.
const GONE: u64 = u64::MAX;

/// What the publisher left for a reader.
struct Mailbox<T> {
    /// The newest publication, until the reader takes it.
    offer: Option<Arc<T>>,
    /// The generation the reader took last: it holds it, or is about to.
    taken: u64,
}

/// What one reader shares with the publisher. Its own cache lines: `offered` is read on every
/// poll, and written only when something is published.
#[repr(align(128))]
struct Slot<T> {
    /// Generation of the newest offer.
    offered: AtomicU64,
    /// The reader's quiescent report: the only generation it holds ([`GONE`] once dropped).
    holds: AtomicU64,
    mailbox: Mutex<Mailbox<T>>,
}

/// A poisoned mailbox still holds a consistent value: every write to it is a single store.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The control thread's side: publishes, and frees what no reader can hold any more.
pub struct Publisher<T> {
    current: Arc<T>,
    /// Older generations not reclaimed yet, oldest first.
    retired: VecDeque<(u64, Arc<T>)>,
    readers: Vec<Arc<Slot<T>>>,
    /// Generations each reader may hold, gathered by `reclaim` (kept to reuse its memory).
    pinned: Vec<u64>,
    reclaimed: u64,
}

impl<T: Versioned> Publisher<T> {
    /// Start with `first` current and no readers.
    pub fn new(first: Arc<T>) -> Publisher<T> {
        Publisher {
            current: first,
            retired: VecDeque::new(),
            readers: Vec::new(),
            pinned: Vec::new(),
            reclaimed: 0,
        }
    }

    /// The newest publication.
    pub fn current(&self) -> &Arc<T> {
        &self.current
    }

    /// The newest publication's generation.
    pub fn generation(&self) -> u64 {
        self.current.generation()
    }

    /// A reader that holds the current publication and will be offered every later one.
    pub fn reader(&mut self) -> Reader<T> {
        let g = self.current.generation();
        let slot = Arc::new(Slot {
            offered: AtomicU64::new(g),
            holds: AtomicU64::new(g),
            mailbox: Mutex::new(Mailbox {
                offer: None,
                taken: g,
            }),
        });
        self.readers.push(Arc::clone(&slot));
        Reader {
            held: Arc::clone(&self.current),
            seen: g,
            slot: Detach(slot),
        }
    }

    /// Make `next` current, offer it to every reader, and reclaim what no reader holds.
    ///
    /// # Panics
    ///
    /// If `next`'s generation is not greater than the current one's.
    pub fn publish(&mut self, next: Arc<T>) {
        let g = next.generation();
        let was = self.current.generation();
        assert!(
            g > was,
            "publication of generation {g} after generation {was}"
        );
        let old = std::mem::replace(&mut self.current, next);
        self.retired.push_back((was, old));
        for slot in &self.readers {
            let untaken = lock(&slot.mailbox).offer.replace(Arc::clone(&self.current));
            slot.offered.store(g, Ordering::Release);
            // Retained in `retired` too: not the last reference.
            drop(untaken);
        }
        self.reclaim();
    }

    /// Drop every retired generation no reader can hold; returns how many went. Forgets the
    /// readers that are gone.
    pub fn reclaim(&mut self) -> usize {
        self.pinned.clear();
        let pinned = &mut self.pinned;
        self.readers.retain(|slot| {
            let mut mailbox = lock(&slot.mailbox);
            // Under the lock: at least what the reader reported before its last take.
            let holds = slot.holds.load(Ordering::Acquire);
            if holds == GONE {
                // It let go of its snapshot before it said so; the offer it never took is
                // dropped here rather than with the slot, which may be on its thread.
                drop(mailbox.offer.take());
                return false;
            }
            pinned.extend([holds, mailbox.taken]);
            true
        });
        let before = self.retired.len();
        let pinned = &self.pinned;
        self.retired.retain(|(g, _)| pinned.contains(g));
        let gone = before - self.retired.len();
        self.reclaimed += gone as u64;
        gone
    }

    /// Old generations still retained (pinned by a reader, or not reclaimed yet).
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    /// Old generations reclaimed so far.
    pub fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    /// Readers not dropped yet (as of the last reclamation).
    pub fn readers(&self) -> usize {
        self.readers.len()
    }
}

impl<T: Versioned> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("generation", &self.current.generation())
            .field(
                "retired",
                &self.retired.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
            )
            .field("readers", &self.readers.len())
            .field("reclaimed", &self.reclaimed)
            .finish()
    }
}

/// Says the reader is gone once everything before it in [`Reader`] has been dropped.
struct Detach<T>(Arc<Slot<T>>);

impl<T> Drop for Detach<T> {
    fn drop(&mut self) {
        self.0.holds.store(GONE, Ordering::Release);
    }
}

/// A worker's side: the one snapshot it reads, and its quiescent point. `Send`, not `Clone`.
pub struct Reader<T> {
    // Dropped before `slot` (fields drop in order): the reader has let go when it says so.
    held: Arc<T>,
    /// The generation of `held`.
    seen: u64,
    slot: Detach<T>,
}

impl<T: Versioned> Reader<T> {
    /// The publication this reader holds.
    #[inline]
    pub fn get(&self) -> &T {
        &self.held
    }

    /// Its generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.seen
    }

    /// The quiescent point: let go of the held publication if a newer one is offered, take that
    /// one and report it. Returns whether the held publication changed. One atomic load when
    /// nothing was published; never waits; never frees a publication.
    #[inline]
    pub fn refresh(&mut self) -> bool {
        // Acquire, with the publisher's Release: the offer went into the mailbox before the
        // lock below is taken. (A plain load on x86.)
        if self.slot.0.offered.load(Ordering::Acquire) <= self.seen {
            return false;
        }
        self.take()
    }

    #[cold]
    fn take(&mut self) -> bool {
        let slot = &self.slot.0;
        let next = {
            let mut mailbox = match slot.mailbox.try_lock() {
                Ok(m) => m,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                // The publisher is in there: next time.
                Err(TryLockError::WouldBlock) => return false,
            };
            let Some(next) = mailbox.offer.take() else {
                // Offers go in before `offered` is raised and only this reader takes them:
                // nothing newer than what it holds is waiting.
                self.seen = slot.offered.load(Ordering::Relaxed).max(self.seen);
                return false;
            };
            mailbox.taken = next.generation();
            next
        };
        self.seen = next.generation();
        // The publisher retains the old generation until `holds` says we let go of it.
        drop(std::mem::replace(&mut self.held, next));
        slot.holds.store(self.seen, Ordering::Release);
        true
    }
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("generation", &self.seen)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;
    use std::thread::{self, ThreadId};

    /// A table that records where it was dropped.
    #[derive(Debug)]
    struct Table {
        generation: u64,
        drops: std::sync::Arc<StdMutex<Vec<(u64, ThreadId)>>>,
    }

    impl Versioned for Table {
        fn generation(&self) -> u64 {
            self.generation
        }
    }

    impl Drop for Table {
        fn drop(&mut self) {
            self.drops
                .lock()
                .unwrap()
                .push((self.generation, thread::current().id()));
        }
    }

    struct Fixture {
        drops: std::sync::Arc<StdMutex<Vec<(u64, ThreadId)>>>,
        next: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                drops: Default::default(),
                next: 1,
            }
        }
        fn table(&mut self) -> Arc<Table> {
            let t = Arc::new(Table {
                generation: self.next,
                drops: std::sync::Arc::clone(&self.drops),
            });
            self.next += 1;
            t
        }
        fn dropped(&self) -> Vec<u64> {
            let mut v: Vec<u64> = self.drops.lock().unwrap().iter().map(|d| d.0).collect();
            v.sort_unstable();
            v
        }
    }

    #[test]
    fn an_idle_reader_takes_each_publication_at_its_next_refresh() {
        let mut f = Fixture::new();
        let mut p = Publisher::new(f.table());
        let mut r = p.reader();
        assert_eq!((r.generation(), r.get().generation), (1, 1));
        assert!(!r.refresh(), "nothing published");
        p.publish(f.table());
        assert_eq!(r.get().generation, 1, "held until the next refresh");
        assert!(r.refresh());
        assert_eq!((r.generation(), r.get().generation), (2, 2));
        assert!(!r.refresh());
        // Two publications between refreshes: the reader goes straight to the newest, and
        // the one it never saw goes at once.
        p.publish(f.table());
        p.publish(f.table());
        assert_eq!(f.dropped(), vec![1, 3]);
        assert!(r.refresh());
        assert_eq!(r.generation(), 4);
        assert_eq!(p.reclaim(), 1, "2, held until that refresh");
        assert_eq!(f.dropped(), vec![1, 2, 3]);
        assert_eq!((p.retired(), p.reclaimed()), (0, 3));
    }

    #[test]
    fn a_generation_is_freed_by_reclaim_once_every_reader_has_moved_past_it() {
        let mut f = Fixture::new();
        let mut p = Publisher::new(f.table());
        let mut readers = [p.reader(), p.reader()];
        p.publish(f.table());
        assert!(readers[0].refresh());
        assert_eq!(p.reclaim(), 0, "reader 1 still holds generation 1");
        assert_eq!(p.retired(), 1);
        let main = thread::current().id();
        thread::scope(|s| {
            let r = &mut readers[1];
            s.spawn(move || assert!(r.refresh()));
        });
        assert!(f.dropped().is_empty(), "the reader let go; nobody freed it");
        assert_eq!(p.reclaim(), 1);
        let drops = f.drops.lock().unwrap().clone();
        assert_eq!(
            drops,
            vec![(1, main)],
            "freed once, on the publisher's thread"
        );
    }

    #[test]
    fn a_stalled_reader_pins_its_own_generation_and_nothing_newer() {
        let mut f = Fixture::new();
        let mut p = Publisher::new(f.table());
        let mut moving = p.reader();
        let stalled = p.reader();
        for _ in 0..50 {
            p.publish(f.table());
            moving.refresh();
            assert!(p.retired() <= 2 * p.readers(), "{p:?}");
        }
        assert_eq!(p.generation(), 51);
        assert_eq!(stalled.get().generation, 1);
        // The moving reader held 50 until its last refresh.
        assert_eq!(p.retired(), 2);
        assert_eq!(p.reclaim(), 1);
        // Only generation 1 outlives the reader's move.
        assert_eq!(f.dropped(), (2..=50).collect::<Vec<_>>());
        assert_eq!(p.retired(), 1);
        drop(stalled);
        assert!(!f.dropped().contains(&1), "still retained by the publisher");
        assert_eq!(p.reclaim(), 1);
        assert_eq!(p.readers(), 1, "the dropped reader is forgotten");
        assert_eq!(f.dropped(), (1..=50).collect::<Vec<_>>());
        assert_eq!(p.reclaimed(), 50);
    }

    #[test]
    fn a_reader_dropped_with_an_offer_it_never_took_leaves_it_to_the_publisher() {
        let mut f = Fixture::new();
        let mut p = Publisher::new(f.table());
        let r = p.reader();
        p.publish(f.table());
        let main = thread::current().id();
        thread::spawn(move || drop(r)).join().unwrap();
        assert_eq!(p.reclaim(), 1);
        assert_eq!(p.readers(), 0);
        drop(p);
        let drops = f.drops.lock().unwrap().clone();
        assert_eq!(drops, vec![(1, main), (2, main)]);
    }

    #[test]
    #[should_panic(expected = "publication of generation 1 after generation 1")]
    fn generations_must_increase() {
        let mut f = Fixture::new();
        let t = f.table();
        let mut p = Publisher::new(Arc::clone(&t));
        p.publish(t);
    }

    #[test]
    fn readers_on_threads_see_increasing_whole_generations_and_frees_stay_on_the_publisher() {
        let mut f = Fixture::new();
        let mut p = Publisher::new(f.table());
        let main = thread::current().id();
        let readers: Vec<Reader<Table>> = (0..2).map(|_| p.reader()).collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let publications = if cfg!(miri) { 20 } else { 2000 };
        thread::scope(|s| {
            for mut r in readers {
                let stop = &stop;
                s.spawn(move || {
                    let mut last = r.generation();
                    while !stop.load(std::sync::atomic::Ordering::Acquire) {
                        r.refresh();
                        let g = r.get().generation;
                        assert!(g >= last && g == r.generation());
                        last = g;
                        thread::yield_now();
                    }
                });
            }
            for _ in 0..publications {
                p.publish(f.table());
                assert!(p.retired() <= 2 * 2, "{p:?}");
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        p.reclaim();
        assert_eq!(p.retired(), 0);
        let drops = f.drops.lock().unwrap().clone();
        assert_eq!(drops.len() as u64, publications);
        assert!(drops.iter().all(|&(_, t)| t == main), "{drops:?}");
        let mut gens: Vec<u64> = drops.iter().map(|d| d.0).collect();
        gens.sort_unstable();
        gens.dedup();
        assert_eq!(gens.len() as u64, publications, "each freed exactly once");
    }
}

/// The protocol under loom: one publisher, two readers, two publications, every interleaving
/// (within `LOOM_MAX_PREEMPTIONS`). Run by `scripts/loom.sh`.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::thread;
    // The test's own bookkeeping is not part of the protocol: std atomics, which add no
    // interleavings (loom runs its threads one at a time).
    use std::sync::atomic::{AtomicU64 as Counter, AtomicUsize};
    use std::sync::Arc as StdArc;

    const READERS: usize = 2;
    /// Generations 1 (the first), 2 and 3.
    const LAST: u64 = 3;

    /// A table whose two halves must always agree, and that counts its drops.
    struct Table {
        generation: u64,
        left: u64,
        right: u64,
        publisher: thread::ThreadId,
        drops: Drops,
    }

    impl Versioned for Table {
        fn generation(&self) -> u64 {
            self.generation
        }
    }

    impl Drop for Table {
        fn drop(&mut self) {
            assert_eq!(
                thread::current().id(),
                self.publisher,
                "generation {} freed off the publisher's thread",
                self.generation
            );
            let before = self.drops[self.generation as usize].fetch_add(1, Ordering::Relaxed);
            assert_eq!(before, 0, "generation {} freed twice", self.generation);
        }
    }

    type Drops = StdArc<[AtomicUsize; LAST as usize + 1]>;

    fn counters() -> Drops {
        StdArc::new(std::array::from_fn(|_| AtomicUsize::new(0)))
    }

    fn table(g: u64, drops: &Drops) -> Arc<Table> {
        Arc::new(Table {
            generation: g,
            left: g * 10,
            right: g * 10,
            publisher: thread::current().id(),
            drops: StdArc::clone(drops),
        })
    }

    /// What a worker does per burst: refresh (its quiescent point, reported where the stall
    /// watch reads it), then read the whole table.
    fn burst(r: &mut Reader<Table>, progress: &Counter, last: &mut u64) {
        if r.refresh() {
            progress.store(r.generation(), Ordering::Relaxed);
        }
        let t = r.get();
        assert_eq!(
            (t.left, t.right),
            (t.generation * 10, t.generation * 10),
            "torn"
        );
        assert!(
            (*last..=LAST).contains(&t.generation),
            "generation {} after {}",
            t.generation,
            *last
        );
        *last = t.generation;
    }

    #[test]
    fn publication_reading_and_reclamation() {
        loom::model(|| {
            let drops = counters();
            let mut p = Publisher::new(table(1, &drops));
            let progress: StdArc<[Counter; READERS]> =
                StdArc::new(std::array::from_fn(|_| Counter::new(1)));
            let handles: Vec<_> = (0..READERS)
                .map(|i| {
                    let mut r = p.reader();
                    let progress = StdArc::clone(&progress);
                    thread::spawn(move || {
                        let mut last = r.generation();
                        for _ in 0..2 {
                            burst(&mut r, &progress[i], &mut last);
                        }
                        last
                    })
                })
                .collect();

            let mut seen = [1u64; READERS];
            for g in 2..=LAST {
                p.publish(table(g, &drops));
                assert!(p.retired() <= 2 * READERS, "{p:?}");
                // What the stall watch reads: never ahead of the publisher, never back.
                for (i, w) in progress.iter().enumerate() {
                    let now = w.load(Ordering::Relaxed);
                    assert!(now >= seen[i] && now <= p.generation(), "{now} {seen:?}");
                    seen[i] = now;
                }
                assert_eq!(drops[LAST as usize].load(Ordering::Relaxed), 0);
            }
            for h in handles {
                let last = h.join().unwrap();
                assert!((1..=LAST).contains(&last));
            }
            // Every reader is gone: everything old goes, each exactly once, here.
            p.reclaim();
            assert_eq!((p.retired(), p.readers()), (0, 0), "{p:?}");
            for g in 1..LAST {
                assert_eq!(
                    drops[g as usize].load(Ordering::Relaxed),
                    1,
                    "generation {g}"
                );
            }
            assert_eq!(drops[LAST as usize].load(Ordering::Relaxed), 0);
            drop(p);
            assert_eq!(drops[LAST as usize].load(Ordering::Relaxed), 1);
        });
    }

    /// A reader that stays inside its burst across both publications holds generation 1
    /// throughout: it is never freed under it, and the generation nobody holds (2) goes.
    #[test]
    fn a_stalled_reader_pins_only_its_own_generation() {
        loom::model(|| {
            let drops = counters();
            let mut p = Publisher::new(table(1, &drops));
            let stalled = p.reader();
            let mut moving = p.reader();
            let progress = StdArc::new(Counter::new(1));
            let h = {
                let progress = StdArc::clone(&progress);
                thread::spawn(move || {
                    let mut last = 1;
                    for _ in 0..2 {
                        burst(&mut moving, &progress, &mut last);
                    }
                })
            };
            for g in 2..=LAST {
                p.publish(table(g, &drops));
                assert!(p.retired() <= 2 * 2, "{p:?}");
            }
            h.join().unwrap();
            p.reclaim();
            assert_eq!(
                stalled.get().left,
                10,
                "the stalled reader's table is intact"
            );
            assert_eq!(drops[1].load(Ordering::Relaxed), 0, "freed under a reader");
            assert_eq!(drops[2].load(Ordering::Relaxed), 1, "held by nobody");
            assert_eq!(p.retired(), 1, "{p:?}");
            drop(stalled);
            p.reclaim();
            assert_eq!(drops[1].load(Ordering::Relaxed), 1);
            assert_eq!(p.retired(), 0);
        });
    }
}
