//! Stalled workers. A worker takes the newest snapshot at every poll and publishes the
//! generation it holds ([`super::progress::WorkerProgress`]); the control thread frees an old
//! snapshot once no worker can hold it ([`crate::tables::publish`]), so a worker stuck inside
//! a burst keeps its own snapshot alive (its tables stay valid: no use after free; nothing
//! newer is kept for it) but must not go unnoticed. The control thread asks [`StallWatch::check`] on every tick: a worker that has
//! stayed on one old generation for longer than the threshold raises one alarm, and one
//! notice when it moves on again.

use std::time::{Duration, Instant};

/// What changed for one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallEvent {
    /// `worker` has held generation `holds` for `for_` while `current` was published.
    Stalled {
        worker: usize,
        holds: u64,
        current: u64,
        for_: Duration,
    },
    /// `worker` reached the current generation again after `for_` stalled.
    Recovered { worker: usize, for_: Duration },
}

#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    /// The old generation the worker was first seen on, and when.
    lagging: Option<(u64, Instant)>,
    alarmed: bool,
}

/// Watches every worker's generation against the current one.
#[derive(Debug)]
pub struct StallWatch {
    threshold: Duration,
    workers: Vec<Watch>,
    alarms: u64,
}

impl StallWatch {
    /// How long a worker may stay on an old generation before the alarm.
    pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(100);

    /// A watch over `workers` workers.
    pub fn new(workers: usize, threshold: Duration) -> StallWatch {
        StallWatch {
            threshold,
            workers: vec![Watch::default(); workers],
            alarms: 0,
        }
    }

    /// Compare each worker's generation (in worker order) with `current` at `now`; append
    /// what changed to `events`. A worker that moves from one old generation to a newer one
    /// that is still not current is making progress (publications can outrun a sample):
    /// only a worker that stays on one old generation stalls.
    pub fn check(
        &mut self,
        now: Instant,
        current: u64,
        generations: impl IntoIterator<Item = u64>,
        events: &mut Vec<StallEvent>,
    ) {
        for (worker, (w, g)) in self.workers.iter_mut().zip(generations).enumerate() {
            if g == 0 {
                // Not started yet (generations start at 1).
                continue;
            }
            if g >= current {
                if let (true, Some((_, since))) = (w.alarmed, w.lagging) {
                    events.push(StallEvent::Recovered {
                        worker,
                        for_: now.saturating_duration_since(since),
                    });
                }
                *w = Watch::default();
                continue;
            }
            match w.lagging {
                Some((held, since)) if held == g => {
                    let for_ = now.saturating_duration_since(since);
                    if !w.alarmed && for_ >= self.threshold {
                        w.alarmed = true;
                        self.alarms += 1;
                        events.push(StallEvent::Stalled {
                            worker,
                            holds: g,
                            current,
                            for_,
                        });
                    }
                }
                Some((_, since)) if w.alarmed => {
                    // Moved on but still behind: progress; the alarm stands until it
                    // reaches the current generation.
                    w.lagging = Some((g, since));
                }
                _ => w.lagging = Some((g, now)),
            }
        }
    }

    /// Alarms raised so far.
    pub fn alarms(&self) -> u64 {
        self.alarms
    }

    /// Workers stalled now.
    pub fn stalled(&self) -> usize {
        self.workers.iter().filter(|w| w.alarmed).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_worker_stuck_on_an_old_generation_raises_one_alarm_then_recovers() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(2, Duration::from_millis(100));
        let mut ev = Vec::new();
        // Worker 0 keeps up; worker 1 stays on generation 5 from t = 0.
        for t in (0..=300).step_by(5) {
            let current = 6 + t / 5;
            w.check(ms(t0, t), current, [current, 5], &mut ev);
            if t < 100 {
                assert!(ev.is_empty(), "no alarm before 100 ms: {ev:?}");
            }
        }
        assert_eq!(
            ev,
            vec![StallEvent::Stalled {
                worker: 1,
                holds: 5,
                current: 26,
                for_: Duration::from_millis(100)
            }]
        );
        assert_eq!((w.alarms(), w.stalled()), (1, 1));
        ev.clear();
        w.check(ms(t0, 310), 70, [70, 70], &mut ev);
        assert_eq!(
            ev,
            vec![StallEvent::Recovered {
                worker: 1,
                for_: Duration::from_millis(310)
            }]
        );
        assert_eq!((w.alarms(), w.stalled()), (1, 0));
    }

    #[test]
    fn a_worker_behind_but_moving_is_not_stalled() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(1, Duration::from_millis(100));
        let mut ev = Vec::new();
        // Publications every tick, the worker always one behind: it is progressing.
        for t in (0..2000).step_by(5) {
            let current = 10 + t;
            w.check(ms(t0, t), current, [current - 1], &mut ev);
        }
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(w.alarms(), 0);
    }

    #[test]
    fn an_idle_worker_on_the_current_generation_is_not_stalled() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(3, Duration::from_millis(100));
        let mut ev = Vec::new();
        for t in (0..5000).step_by(5) {
            w.check(ms(t0, t), 1, [1, 1, 1], &mut ev);
        }
        assert!(ev.is_empty());
    }
}
