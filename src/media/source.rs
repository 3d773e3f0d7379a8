//! Video sources behind one trait, each run by a capture thread that keeps the latest frame
//! in a slot for the pipeline, reports its state, and reopens a failed source with backoff.

use super::slot::LatestFrame;
use super::{
    file::VideoFile, images::Images, rtsp::Rtsp, test_pattern::TestPattern, v4l2::Camera,
    webrtc::WebrtcInput, Frame,
};
use crate::pipeline::status::Shared;
use crate::settings::redact;
use crate::settings::typed::Input;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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
    if let Some(path) = uri.strip_prefix("file:") {
        return Ok(Box::new(VideoFile::open(path, input)?));
    }
    if let Some(path) = uri.strip_prefix("v4l2:") {
        let (w, h, fps) = (input.width, input.height, input.fps);
        return Ok(Box::new(Camera::open(path, w, h, fps)?));
    }
    if ["rtsp://", "rtspt://", "rtspu://"]
        .iter()
        .any(|p| uri.starts_with(p))
    {
        return Ok(Box::new(Rtsp::open(uri)?));
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
        self.wait_for(self.period);
    }

    /// Sleeps until this frame is due, and makes the next one due `shown` later (video
    /// files say how long each frame is shown).
    pub fn wait_for(&mut self, shown: Duration) {
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        } else if now - self.next > shown {
            // Fell behind (a slow disk, a suspended machine): don't burst to catch up.
            self.next = now;
        }
        self.next += shown;
    }
}

/// Why a source has nothing more to give, by design (a file played once): the capture
/// thread then reports `waiting` with this reason instead of reopening it.
#[derive(Debug)]
pub struct Ended(pub String);

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Ended {}

/// A running source. Dropping it stops its thread, waiting a little for it to let go of
/// its device; a thread stuck in a slow call finishes on its own, unheard.
pub struct Capture {
    pub input: Input,
    pub slot: Arc<LatestFrame>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread ends.
    ended: mpsc::Receiver<()>,
}

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);
/// The most the pipeline thread waits for an old source to stop.
const STOP_WAIT: Duration = Duration::from_secs(2);

impl Capture {
    pub fn start(input: Input, shared: Arc<Shared>) -> Capture {
        let slot = Arc::new(LatestFrame::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (alive, ended) = mpsc::channel::<()>();
        let worker = Worker {
            input: input.clone(),
            slot: slot.clone(),
            stop: stop.clone(),
            shared,
        };
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let _alive = alive;
                worker.run();
            })
            .expect("spawn capture thread");
        Capture {
            input,
            slot,
            stop,
            ended,
        }
    }

    /// Whether this capture already serves `input`: only a change of source or its size,
    /// rate or looping reopens it (flipping is the pipeline's).
    pub fn serves(&self, input: &Input) -> bool {
        Input {
            flip: String::new(),
            ..self.input.clone()
        } == Input {
            flip: String::new(),
            ..input.clone()
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.ended.recv_timeout(STOP_WAIT);
    }
}

struct Worker {
    input: Input,
    slot: Arc<LatestFrame>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(&self) {
        let mut retry = FIRST_RETRY;
        while !self.stopped() {
            self.report("connecting", None, None);
            let failure = match guarded(|| open(&self.input, &self.shared)) {
                Ok(source) => match self.play(source, &mut retry) {
                    Some(failure) => failure,
                    None => return,
                },
                Err(e) => e,
            };
            if let Some(ended) = failure.downcast_ref::<Ended>() {
                tracing::info!(uri = %redact::uri(&self.input.uri), "input ended: {ended}");
                self.report("waiting", Some(ended.to_string()), None);
                self.idle_until(None);
                return;
            }
            tracing::warn!(uri = %redact::uri(&self.input.uri), "input failed: {failure:#}; retrying in {retry:?}");
            self.report("error", Some(format!("{failure:#}")), None);
            self.idle_until(Some(Instant::now() + retry));
            retry = (retry * 2).min(LAST_RETRY);
        }
    }

    /// Passes the source's frames on, reporting its state and frame size as they change,
    /// until it fails (its error) or the capture stops (`None`). Frames flowing again
    /// reset the backoff.
    fn play(
        &self,
        mut source: Box<dyn Source + '_>,
        retry: &mut Duration,
    ) -> Option<anyhow::Error> {
        let mut reported = None;
        while !self.stopped() {
            let frame = match guarded(|| source.next_frame()) {
                Ok(frame) => frame,
                Err(e) => return Some(e),
            };
            let now = (source.state(), (frame.width, frame.height));
            if reported != Some(now) {
                reported = Some(now);
                self.report(now.0, None, Some(now.1));
                *retry = FIRST_RETRY;
            }
            self.slot.put(frame);
        }
        None
    }

    /// Sleeps until `until` (`None`: for good) or until the capture is stopped.
    fn idle_until(&self, until: Option<Instant>) {
        while !self.stopped() && until.is_none_or(|until| Instant::now() < until) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Puts the state in `/api/v1/status`, unless a newer source took over meanwhile;
    /// `size` is the frames' when known, else the configured one.
    fn report(&self, state: &str, reason: Option<String>, size: Option<(u32, u32)>) {
        if self.stopped() {
            return;
        }
        let input = &self.input;
        self.shared.update_status(|status| {
            status.input.uri = redact::uri(&input.uri);
            (status.input.width, status.input.height) = size.unwrap_or((input.width, input.height));
            status.input.state = state.to_owned();
            let (error, detail) = match state {
                "error" => (reason, None),
                _ => (None, reason),
            };
            status.input.error = error;
            status.input.detail = detail;
        });
    }
}

/// `step`'s result, with a panic (a bug in a decoder, say) turned into an error, so that
/// the capture thread reports it and tries again.
fn guarded<T>(step: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow::anyhow!("the source failed unexpectedly: {message}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_source_is_an_error() {
        let error = guarded::<()>(|| panic!("bad bits")).unwrap_err();
        assert!(error.to_string().contains("bad bits"), "{error}");
        assert_eq!(guarded(|| Ok(3)).unwrap(), 3);
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
