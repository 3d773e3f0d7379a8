//! What the pipeline reports: per-model state and timings, frame rate, input state, and the
//! latest results. Written by the pipeline thread, read by the web side; neither waits long.

use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    #[default]
    Disabled,
    Ready,
    Error,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelStatus {
    pub state: ModelState,
    pub network: String,
    pub error: Option<String>,
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
    /// connecting | playing | waiting | error
    pub state: String,
    pub error: Option<String>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RuntimeStatus {
    pub models: BTreeMap<String, ModelStatus>,
    pub pipeline: PipelineStatus,
    pub input: InputStatus,
}

/// The pipeline's side of the shared state.
#[derive(Default)]
pub struct Shared {
    status: RwLock<RuntimeStatus>,
    results: RwLock<Json>,
}

impl Shared {
    pub fn status(&self) -> RuntimeStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn results(&self) -> Json {
        self.results
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn update_status(&self, update: impl FnOnce(&mut RuntimeStatus)) {
        update(&mut self.status.write().unwrap_or_else(|p| p.into_inner()));
    }
}
