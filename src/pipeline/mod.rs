//! The pipeline thread: the one owner of models and frames. Capture -> every enabled model
//! -> overlays -> outputs, reading a settings snapshot each frame; it never waits on the web
//! side, and the latest frame always wins.

pub mod lanes;
mod models;
pub mod status;

use crate::media::source::Capture;
use crate::media::Frame;
use crate::settings::{Settings, Store};
use crate::systemd::Watchdog;
use crate::vision::catalog::Catalog;
use models::Models;
use status::Shared;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the loop waits for a frame before looking at settings and models again.
const FRAME_WAIT: Duration = Duration::from_millis(100);

pub fn spawn(
    store: Arc<Store>,
    catalog: Result<Catalog, String>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mut pipeline = Pipeline::new(catalog, shared);
            // Every model's state is known before the first frame arrives (or never does).
            pipeline.models.update(&store.settings());
            pipeline.report(0);
            // Fed here, not from a timer: a pipeline stuck in a model stops the pings and
            // systemd restarts the service.
            let mut watchdog = Watchdog::from_env();
            while !stop.load(Ordering::Relaxed) {
                pipeline.step(&store.settings());
                watchdog.feed();
            }
        })
}

struct Pipeline {
    shared: Arc<Shared>,
    models: Models,
    capture: Option<Capture>,
    frames: u64,
    rate: Rate,
}

impl Pipeline {
    fn new(catalog: Result<Catalog, String>, shared: Arc<Shared>) -> Pipeline {
        Pipeline {
            models: Models::new(catalog, shared.clone()),
            shared,
            capture: None,
            frames: 0,
            rate: Rate::default(),
        }
    }

    /// One turn: apply settings, take the newest frame if one came, run and draw the models.
    fn step(&mut self, settings: &Arc<Settings>) {
        if !self
            .capture
            .as_ref()
            .is_some_and(|c| c.serves(&settings.input))
        {
            self.capture = None; // stop the old source before opening the device again
            self.capture = Some(Capture::start(settings.input.clone(), self.shared.clone()));
        }
        self.models.update(settings);
        let capture = self.capture.as_ref().expect("started above");
        let frame = capture.slot.take(FRAME_WAIT);
        let dropped = capture.slot.dropped();
        if let Some(frame) = frame {
            let mut frame = frame.flipped(&settings.input.flip);
            self.models.process(&frame, settings);
            self.models.draw(&mut frame, settings);
            self.frames += 1;
            self.rate.tick();
            self.publish(frame);
        }
        self.report(dropped);
    }

    fn publish(&self, frame: Frame) {
        let mut results =
            serde_json::json!({"frame": self.frames, "width": frame.width, "height": frame.height});
        results
            .as_object_mut()
            .expect("an object")
            .extend(self.models.results());
        self.shared.set_results(results);
        self.shared.set_frame(Arc::new(frame));
    }

    fn report(&self, dropped: u64) {
        self.shared.update_status(|status| {
            status.pipeline.frames = self.frames;
            status.pipeline.dropped = dropped;
            status.pipeline.fps = self.rate.fps();
            for (section, model) in self.models.statuses() {
                status.models.insert(section.to_owned(), model.clone());
            }
        });
    }
}

/// Frames per second over the last second or so.
#[derive(Default)]
struct Rate {
    window_start: Option<Instant>,
    count: u32,
    fps: f64,
}

impl Rate {
    fn tick(&mut self) {
        let now = Instant::now();
        let start = *self.window_start.get_or_insert(now);
        self.count += 1;
        let elapsed = now - start;
        if elapsed >= Duration::from_secs(1) {
            self.fps = self.count as f64 / elapsed.as_secs_f64();
            self.window_start = Some(now);
            self.count = 0;
        }
    }

    fn fps(&self) -> f64 {
        match self.window_start {
            // No frame for over two seconds: the rate is zero, not the last one seen.
            Some(start) if start.elapsed() > Duration::from_secs(2) => 0.0,
            _ => self.fps,
        }
    }
}
