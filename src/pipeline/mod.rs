//! The pipeline thread: the one owner of models and frames.
//!
//! For now it follows the settings snapshots and reports each model's state; capture,
//! inference and encoding join this loop as they land.

pub mod status;

use crate::settings::schema::MODEL_SECTIONS;
use crate::settings::{Settings, Store};
use status::{ModelState, ModelStatus, Shared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const IDLE_TICK: Duration = Duration::from_millis(50);

pub fn spawn(
    store: Arc<Store>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let mut current: Option<Arc<Settings>> = None;
            while !stop.load(Ordering::Relaxed) {
                let settings = store.settings();
                if current.as_ref() != Some(&settings) {
                    report_models(&settings, &shared);
                    current = Some(settings);
                }
                std::thread::sleep(IDLE_TICK);
            }
        })
}

fn report_models(settings: &Settings, shared: &Shared) {
    shared.update_status(|status| {
        status.input.uri = settings.input.uri.clone();
        status.input.state = "waiting".into();
        status.input.error = Some("video sources are not built yet".into());
        for section in MODEL_SECTIONS {
            let model = settings
                .model(section)
                .expect("every model section has a model");
            let (state, error) = if model.enabled {
                (
                    ModelState::Error,
                    Some("inference is not built yet".to_owned()),
                )
            } else {
                (ModelState::Disabled, None)
            };
            status.models.insert(
                section.to_owned(),
                ModelStatus {
                    state,
                    network: model.network.clone(),
                    error,
                    ..ModelStatus::default()
                },
            );
        }
    });
}
