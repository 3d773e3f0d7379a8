//! What the pipeline reports: per-model state and timings, frame rate, input state, and the
//! latest results. Written by the pipeline thread, read by the web side; neither waits long.

use crate::media::webrtc::Ingest;
use crate::media::Frame;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    #[default]
    Disabled,
    Loading,
    Ready,
    Error,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelStatus {
    pub state: ModelState,
    pub network: String,
    pub error: Option<String>,
    /// What a `loading` model waits for when that can take long (a TensorRT engine build).
    pub detail: Option<String>,
    /// The provider its session really runs on, and the nodes left to the CPU.
    #[serde(flatten)]
    pub placement: crate::engine::Placement,
    /// Milliseconds of the last frame's inference (pre-processing and decoding included).
    pub last_ms: f64,
    /// Moving average of `last_ms`.
    pub avg_ms: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PipelineStatus {
    pub fps: f64,
    pub frames: u64,
    /// Frames the source produced that the pipeline had no time for (latest frame wins).
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct InputStatus {
    pub uri: String,
    /// connecting | playing | waiting (no WHIP publisher) | error
    pub state: String,
    /// Why it is in `error`.
    pub error: Option<String>,
    /// Why it is `waiting` (e.g. a file played once has ended).
    pub detail: Option<String>,
    /// The frames' size once playing, else the configured one.
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RuntimeStatus {
    /// The inference backend in use and why (set once the first model loads).
    pub engine: Option<crate::engine::Choice>,
    pub models: BTreeMap<String, ModelStatus>,
    pub pipeline: PipelineStatus,
    pub input: InputStatus,
}

/// The pipeline's side of the shared state.
#[derive(Default)]
pub struct Shared {
    status: RwLock<RuntimeStatus>,
    /// Latest wins: writing never waits for a reader (MQTT follows it).
    results: watch::Sender<Json>,
    frame: Mutex<Published>,
    published: Condvar,
    /// Where WHIP publishers put the frames the `webrtc` input hands to the pipeline.
    pub ingest: Ingest,
}

/// The latest annotated frame and how many came before it, so a reader can wait for the
/// next one.
#[derive(Default)]
struct Published {
    number: u64,
    frame: Option<Arc<Frame>>,
}

impl Shared {
    pub fn status(&self) -> RuntimeStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn results(&self) -> Json {
        self.results.borrow().clone()
    }

    /// Sees each new results object (or the latest, for a reader that falls behind).
    pub fn watch_results(&self) -> watch::Receiver<Json> {
        self.results.subscribe()
    }

    pub fn update_status(&self, update: impl FnOnce(&mut RuntimeStatus)) {
        update(&mut self.status.write().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn set_results(&self, results: Json) {
        self.results.send_replace(results);
    }

    /// The latest annotated frame.
    pub fn frame(&self) -> Option<Arc<Frame>> {
        self.frame
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .frame
            .clone()
    }

    pub fn set_frame(&self, frame: Arc<Frame>) {
        let mut published = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        published.number += 1;
        published.frame = Some(frame);
        self.published.notify_all();
    }

    /// The first frame published after frame number `seen`, with its number, waiting at most
    /// `limit` for it.
    pub fn next_frame(&self, seen: u64, limit: Duration) -> Option<(u64, Arc<Frame>)> {
        let published = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        let (published, _) = self
            .published
            .wait_timeout_while(published, limit, |p| p.number <= seen)
            .unwrap_or_else(|p| p.into_inner());
        let frame = published
            .frame
            .clone()
            .filter(|_| published.number > seen)?;
        Some((published.number, frame))
    }
}
