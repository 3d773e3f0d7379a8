//! The `webrtc` source: frames that WHIP publishers send in, decoded by the web side into
//! the `Ingest` slot. With no publisher (or one that went quiet) it shows a dark "waiting for
//! video" frame at the input's rate, so the output never stops.

use super::slot::LatestFrame;
use super::source::{Pacer, Source};
use super::Frame;
use crate::settings::typed::Input;
use crate::vision::overlay;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A publisher silent for this long counts as gone.
const STALL: Duration = Duration::from_secs(1);

/// Between WHIP publishers (writers) and the `webrtc` source (reader).
#[derive(Default)]
pub struct Ingest {
    pub slot: LatestFrame,
    publishers: AtomicUsize,
}

impl Ingest {
    /// Counts a publisher in while the guard lives.
    pub fn publisher(&self) -> PublisherGuard<'_> {
        self.publishers.fetch_add(1, Ordering::Relaxed);
        PublisherGuard(self)
    }

    pub fn publishing(&self) -> bool {
        self.publishers.load(Ordering::Relaxed) > 0
    }
}

pub struct PublisherGuard<'a>(&'a Ingest);

impl Drop for PublisherGuard<'_> {
    fn drop(&mut self) {
        self.0.publishers.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct WebrtcInput<'a> {
    ingest: &'a Ingest,
    period: Duration,
    pacer: Pacer,
    waiting_frame: Frame,
    last_frame: Option<Instant>,
}

impl<'a> WebrtcInput<'a> {
    pub fn new(ingest: &'a Ingest, input: &Input) -> WebrtcInput<'a> {
        WebrtcInput {
            ingest,
            period: Duration::from_secs_f64(1.0 / input.fps.max(1) as f64),
            pacer: Pacer::new(input.fps),
            waiting_frame: waiting_frame(input.width, input.height),
            last_frame: None,
        }
    }

    fn waiting(&self) -> bool {
        !self.ingest.publishing() || self.last_frame.is_none_or(|at| at.elapsed() > STALL)
    }
}

impl Source for WebrtcInput<'_> {
    fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = self.ingest.slot.take(self.period) {
                self.last_frame = Some(Instant::now());
                return Ok(frame);
            }
            if self.waiting() {
                self.pacer.wait();
                return Ok(self.waiting_frame.clone());
            }
        }
    }

    fn state(&self) -> &'static str {
        if self.waiting() {
            "waiting"
        } else {
            "playing"
        }
    }
}

fn waiting_frame(width: u32, height: u32) -> Frame {
    let mut frame = Frame::new(width, height);
    for pixel in frame.rgb.chunks_exact_mut(3) {
        pixel.copy_from_slice(&[20, 22, 28]);
    }
    let scale = (height / 180).max(1);
    let (x, y) = (width as i32 / 10, height as i32 / 2 - 8 * scale as i32);
    overlay::text(
        &mut frame,
        x,
        y,
        "waiting for video",
        [220, 220, 220],
        None,
        scale,
    );
    let hint = "publish with WHIP: POST /whip";
    overlay::text(
        &mut frame,
        x,
        y + 14 * scale as i32,
        hint,
        [140, 140, 150],
        None,
        (scale / 2).max(1),
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            uri: "webrtc".into(),
            width: 64,
            height: 48,
            fps: 100,
            flip: "none".into(),
            looping: true,
        }
    }

    #[test]
    fn without_a_publisher_it_waits_and_with_one_it_plays() {
        let ingest = Ingest::default();
        let mut source = WebrtcInput::new(&ingest, &input());
        let waiting = source.next_frame().unwrap();
        assert_eq!((waiting.width, waiting.height), (64, 48));
        assert_eq!(source.state(), "waiting");

        let _publisher = ingest.publisher();
        ingest.slot.put(Frame::new(32, 16));
        assert_eq!(source.next_frame().unwrap().width, 32);
        assert_eq!(source.state(), "playing");
    }
}
