//! Video sources behind one trait, each run by a capture thread that keeps the latest frame
//! in a slot for the pipeline, reports its state, and reopens a failed source with backoff.

use super::slot::LatestFrame;
use super::{images::Images, test_pattern::TestPattern, webrtc::WebrtcInput, Frame};
use crate::pipeline::status::Shared;
use crate::settings::typed::Input;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A source of frames; `next_frame` blocks until the next one is due.
pub trait Source: Send {
    fn next_frame(&mut self) -> anyhow::Result<Frame>;

    /// What `/api/v1/status` shows while frames come: `playing`, or `waiting` for a sender.
    fn state(&self) -> &'static str {
        "playing"
    }
}

/// Opens the source an input URI names.
pub fn open<'a>(input: &Input, shared: &'a Shared) -> anyhow::Result<Box<dyn Source + 'a>> {
    let uri = input.uri.as_str();
    if uri == "webrtc" {
        return Ok(Box::new(WebrtcInput::new(&shared.ingest, input)));
    }
    if uri == "test" {
        return Ok(Box::new(TestPattern::new(
            input.width,
            input.height,
            input.fps,
        )));
    }
    if let Some(pattern) = uri.strip_prefix("images:") {
        return Ok(Box::new(Images::open(pattern, input)?));
    }
    anyhow::bail!("input {uri:?} is not supported by this build yet")
}

/// Keeps frames paced at a rate: `wait` sleeps until the next frame is due.
pub struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(fps: u32) -> Pacer {
        Pacer {
            period: Duration::from_secs_f64(1.0 / fps.max(1) as f64),
            next: Instant::now(),
        }
    }

    pub fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        } else if now - self.next > self.period {
            // Fell behind (a slow disk, a suspended machine): don't burst to catch up.
            self.next = now;
        }
        self.next += self.period;
    }
}

/// A running source: its thread stops and is joined when this is dropped.
pub struct Capture {
    pub input: Input,
    pub slot: Arc<LatestFrame>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl Capture {
    pub fn start(input: Input, shared: Arc<Shared>) -> Capture {
        let slot = Arc::new(LatestFrame::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (input, slot, stop) = (input.clone(), slot.clone(), stop.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || capture(&input, &slot, &stop, &shared))
                .expect("spawn capture thread")
        };
        Capture {
            input,
            slot,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture(input: &Input, slot: &LatestFrame, stop: &AtomicBool, shared: &Shared) {
    let mut retry = FIRST_RETRY;
    while !stop.load(Ordering::Relaxed) {
        report(shared, input, "connecting", None);
        let failure = match open(input, shared) {
            Ok(mut source) => {
                let mut reported = "connecting";
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match source.next_frame() {
                        Ok(frame) => {
                            if source.state() != reported {
                                reported = source.state();
                                report(shared, input, reported, None);
                                retry = FIRST_RETRY;
                            }
                            slot.put(frame.flipped(&input.flip));
                        }
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        tracing::warn!(uri = %redact(&input.uri), "input failed: {failure:#}; retrying in {retry:?}");
        report(shared, input, "error", Some(format!("{failure:#}")));
        sleep_unless_stopped(retry, stop);
        retry = (retry * 2).min(LAST_RETRY);
    }
}

fn report(shared: &Shared, input: &Input, state: &str, error: Option<String>) {
    shared.update_status(|status| {
        status.input.uri = redact(&input.uri);
        status.input.width = input.width;
        status.input.height = input.height;
        status.input.state = state.to_owned();
        status.input.error = error;
    });
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The URI without credentials (`rtsp://user:pass@cam/...` -> `rtsp://cam/...`), for logs and status.
pub fn redact(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => uri.to_owned(),
            }
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_leave_the_uri() {
        assert_eq!(
            redact("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://10.0.0.5:554/stream1"
        );
        assert_eq!(redact("rtsp://cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(redact("images:/srv/pictures"), "images:/srv/pictures");
    }

    #[test]
    fn a_pacer_keeps_the_rate_without_bursting() {
        let mut pacer = Pacer::new(100);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.wait();
        }
        assert!(start.elapsed() >= Duration::from_millis(40));
    }
}
