//! Paces HTTP requests to `server.max_request_rate`, all clients together: a client polling
//! in a loop gets its answers at that rate, quickly, instead of taking CPU the pipeline needs
//! (on a 2-core Jetson a saturating client halved the frame rate; docs/benchmarks.md).
//!
//! Requests over the rate wait their turn in arrival order (a virtual schedule, as GCRA
//! does); a request that would wait longer than `MAX_WAIT` is answered 429 at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longer than this in the queue and a request is refused with `Retry-After` instead.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Requests an idle server answers at once, however close together (a page load's burst).
const BURST: u32 = 64;

#[derive(Debug, PartialEq)]
pub enum Turn {
    /// Serve the request after this wait (often zero).
    After(Duration),
    /// The queue is longer than `MAX_WAIT`: refuse, and ask to come back after this.
    Refuse(Duration),
}

#[derive(Default)]
pub struct Pacer {
    /// When the last request taken was (virtually) due: the schedule's tail.
    tail: Mutex<Option<Instant>>,
}

impl Pacer {
    /// The turn of a request arriving `now` under `rate` requests a second (0: no limit).
    pub fn turn(&self, rate: u32, now: Instant) -> Turn {
        if rate == 0 {
            return Turn::After(Duration::ZERO);
        }
        let interval = Duration::from_secs(1) / rate;
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        // An idle spell earns up to BURST requests' worth of credit, no more.
        let earliest = now.checked_sub(interval * BURST).unwrap_or(now);
        let due = tail.map_or(earliest, |t| t.max(earliest)) + interval;
        let wait = due.saturating_duration_since(now);
        if wait > MAX_WAIT {
            return Turn::Refuse(wait - MAX_WAIT);
        }
        *tail = Some(due);
        Turn::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(pacer: &Pacer, rate: u32, now: Instant, count: usize) -> Vec<Duration> {
        (0..count)
            .map(|_| match pacer.turn(rate, now) {
                Turn::After(wait) => wait,
                Turn::Refuse(after) => panic!("refused, retry after {after:?}"),
            })
            .collect()
    }

    #[test]
    fn a_burst_passes_then_requests_wait_one_interval_each() {
        let pacer = Pacer::default();
        let now = Instant::now() + Duration::from_secs(10);
        let waits = waits(&pacer, 1000, now, BURST as usize + 3);
        assert!(
            waits[..BURST as usize].iter().all(|w| w.is_zero()),
            "{waits:?}"
        );
        assert_eq!(
            waits[BURST as usize..],
            [1, 2, 3].map(Duration::from_millis)
        );
    }

    #[test]
    fn the_credit_comes_back_with_time_but_never_beyond_the_burst() {
        let pacer = Pacer::default();
        let start = Instant::now() + Duration::from_secs(10);
        waits(&pacer, 100, start, BURST as usize + 10);
        // The ten queued were due within 100 ms; 10 ms after the last, nothing waits.
        let later = start + Duration::from_millis(110);
        assert_eq!(pacer.turn(100, later), Turn::After(Duration::ZERO));
        // An hour idle still buys only BURST requests.
        let much_later = start + Duration::from_secs(3600);
        let waits = waits(&pacer, 100, much_later, BURST as usize + 1);
        assert_eq!(waits.last(), Some(&Duration::from_millis(10)));
    }

    #[test]
    fn a_queue_longer_than_the_limit_is_refused_without_taking_a_turn() {
        let pacer = Pacer::default();
        let now = Instant::now() + Duration::from_secs(10);
        // At 10/s, BURST pass, then ten more fill the second the queue may hold.
        waits(&pacer, 10, now, BURST as usize + 10);
        let refused = pacer.turn(10, now);
        assert_eq!(refused, Turn::Refuse(Duration::from_millis(100)));
        // Refusals do not lengthen the queue: the next request is refused the same.
        assert_eq!(pacer.turn(10, now), refused);
        assert_eq!(
            pacer.turn(10, now + Duration::from_millis(100)),
            Turn::After(MAX_WAIT)
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let pacer = Pacer::default();
        let now = Instant::now();
        assert!(waits(&pacer, 0, now, 10_000).iter().all(|w| w.is_zero()));
    }
}
