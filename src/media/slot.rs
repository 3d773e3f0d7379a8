//! The latest-frame slot between a source's capture thread and the pipeline: a new frame
//! replaces one not yet taken (counted as dropped), so no queue can grow.

use super::Frame;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct LatestFrame {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    frame: Option<Frame>,
    dropped: u64,
}

impl LatestFrame {
    pub fn put(&self, frame: Frame) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.frame.replace(frame).is_some() {
            state.dropped += 1;
        }
        self.ready.notify_one();
    }

    /// The newest frame, waiting at most `limit` for one.
    pub fn take(&self, limit: Duration) -> Option<Frame> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, limit, |s| s.frame.is_none())
            .unwrap_or_else(|p| p.into_inner());
        state.frame.take()
    }

    /// Frames replaced before the pipeline took them.
    pub fn dropped(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_frame_wins_and_the_rest_are_counted() {
        let slot = LatestFrame::default();
        assert!(slot.take(Duration::from_millis(1)).is_none());
        for width in 1..=3 {
            slot.put(Frame::new(width, 1));
        }
        assert_eq!(slot.take(Duration::ZERO).unwrap().width, 3);
        assert_eq!(slot.dropped(), 2);
        assert!(slot.take(Duration::ZERO).is_none());
    }
}
