//! The pipeline's models: which task each section runs, loading new ones off the pipeline
//! thread when a section's network (or the engine) changes, while frames keep flowing.

use super::lanes::Lanes;
use super::status::{ModelState, ModelStatus, Shared};
use crate::engine::{self, Loader, Placement};
use crate::settings::schema::MODEL_SECTIONS;
use crate::settings::typed::Engine as EngineSettings;
use crate::settings::Settings;
use crate::vision::{self, catalog::Catalog, Task};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// What a loaded task depends on: a change in any of these loads it anew.
#[derive(Debug, Clone, PartialEq)]
struct Recipe {
    model: crate::settings::typed::Model,
    engine: EngineSettings,
}

impl Recipe {
    fn of(settings: &Settings, section: &str) -> Option<Recipe> {
        let model = settings.model(section)?;
        model.enabled.then(|| Recipe {
            model: model.clone(),
            engine: settings.engine.clone(),
        })
    }
}

struct Request {
    section: &'static str,
    recipe: Recipe,
    settings: Arc<Settings>,
}

/// What the loader thread tells the pipeline.
enum Message {
    /// A load that takes long has begun (a TensorRT engine build), and why.
    Loading {
        section: &'static str,
        recipe: Recipe,
        detail: String,
    },
    Loaded(Loaded),
}

struct Loaded {
    section: &'static str,
    recipe: Recipe,
    task: anyhow::Result<(Box<dyn Task>, Placement)>,
}

/// One section's task and what it was built from.
struct Slot {
    section: &'static str,
    task: Option<(Recipe, Box<dyn Task>)>,
    /// The recipe last asked for (loaded, loading or failed): asked again only on change.
    wanted: Option<Recipe>,
    status: ModelStatus,
}

impl Slot {
    /// Runs the slot's task on `frame`, keeping its time and state in its status.
    fn process(&mut self, frame: &crate::media::Frame, settings: &Settings) {
        let Some((_, task)) = self.task.as_mut() else {
            return;
        };
        let started = Instant::now();
        match task.process(frame, settings) {
            Ok(()) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let status = &mut self.status;
                status.avg_ms = if status.avg_ms == 0.0 {
                    ms
                } else {
                    status.avg_ms * 0.9 + ms * 0.1
                };
                status.last_ms = ms;
                if status.state == ModelState::Error {
                    status.error = None;
                }
                status.state = ModelState::Ready;
            }
            Err(e) => {
                self.status.state = ModelState::Error;
                self.status.error = Some(format!("{e:#}"));
            }
        }
    }
}

pub struct Models {
    slots: Vec<Slot>,
    /// Slot i's task runs on lane i when it is on the GPU.
    lanes: Lanes,
    requests: mpsc::Sender<Request>,
    loaded: mpsc::Receiver<Message>,
}

impl Models {
    /// Starts the loader thread; `catalog` is where catalog names are looked up.
    pub fn new(catalog: Result<Catalog, String>, shared: Arc<Shared>) -> Models {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, loaded) = mpsc::channel();
        std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(move || load_forever(&catalog, &inbox, &outbox, &shared))
            .expect("spawn model loader thread");
        let slots: Vec<Slot> = MODEL_SECTIONS
            .iter()
            .map(|&section| Slot {
                section,
                task: None,
                wanted: None,
                status: ModelStatus::default(),
            })
            .collect();
        Models {
            lanes: Lanes::new(slots.len()).expect("start the pipeline's lanes"),
            slots,
            requests,
            loaded,
        }
    }

    /// Between frames: installs finished loads and asks for what the settings now want.
    pub fn update(&mut self, settings: &Arc<Settings>) {
        while let Ok(message) = self.loaded.try_recv() {
            let loaded = match message {
                Message::Loading {
                    section,
                    recipe,
                    detail,
                } => {
                    if let Some(slot) = self.slots.iter_mut().find(|s| s.section == section) {
                        if slot.wanted.as_ref() == Some(&recipe) {
                            slot.status.detail = Some(detail);
                        }
                    }
                    continue;
                }
                Message::Loaded(loaded) => loaded,
            };
            let Some(slot) = self.slots.iter_mut().find(|s| s.section == loaded.section) else {
                continue;
            };
            if slot.wanted.as_ref() != Some(&loaded.recipe) {
                continue; // settings moved on while it loaded
            }
            slot.status.detail = None;
            match loaded.task {
                Ok((task, placement)) => {
                    slot.task = Some((loaded.recipe, task));
                    slot.status.state = ModelState::Ready;
                    slot.status.error = None;
                    slot.status.placement = placement;
                    slot.status.avg_ms = 0.0;
                    tracing::info!(section = slot.section, network = %slot.status.network, "model ready");
                }
                Err(e) => {
                    slot.task = None;
                    slot.status.state = ModelState::Error;
                    slot.status.error = Some(format!("{e:#}"));
                    slot.status.placement = Placement::default();
                    tracing::error!(section = slot.section, "model failed to load: {e:#}");
                }
            }
        }
        for slot in &mut self.slots {
            let recipe = Recipe::of(settings, slot.section);
            slot.status.network = settings
                .model(slot.section)
                .map(|m| m.network.clone())
                .unwrap_or_default();
            if recipe == slot.wanted {
                continue;
            }
            slot.wanted = recipe.clone();
            match recipe {
                None => {
                    slot.task = None;
                    slot.status = ModelStatus {
                        network: slot.status.network.clone(),
                        ..ModelStatus::default()
                    };
                }
                Some(recipe) => {
                    // The old task (if any) keeps running until the new one is ready.
                    if slot.task.is_none() {
                        slot.status.state = ModelState::Loading;
                        slot.status.error = None;
                    }
                    let _ = self.requests.send(Request {
                        section: slot.section,
                        recipe,
                        settings: settings.clone(),
                    });
                }
            }
        }
    }

    /// Runs every ready task on `frame`, timing each (see `Lanes::run`).
    pub fn process(&mut self, frame: &crate::media::Frame, settings: &Settings) {
        self.lanes.run(
            self.slots
                .iter_mut()
                .enumerate()
                .filter(|(_, slot)| slot.task.is_some()),
            |(lane, slot)| slot.status.placement.is_on_gpu().then_some(*lane),
            |(_, slot)| slot.process(frame, settings),
        );
    }

    /// Draws every task's last result, in `vision::DRAW_ORDER`.
    pub fn draw(&self, frame: &mut crate::media::Frame, settings: &Settings) {
        let tasks: Vec<&dyn vision::Task> = vision::DRAW_ORDER
            .iter()
            .filter_map(|section| self.slots.iter().find(|s| s.section == *section))
            .filter_map(|slot| slot.task.as_ref().map(|(_, task)| task.as_ref()))
            .collect();
        vision::draw(&tasks, frame, settings);
    }

    pub fn results(&self) -> serde_json::Map<String, serde_json::Value> {
        self.slots
            .iter()
            .filter_map(|s| {
                s.task
                    .as_ref()
                    .map(|(_, task)| (s.section.to_owned(), task.result()))
            })
            .collect()
    }

    pub fn statuses(&self) -> impl Iterator<Item = (&'static str, &ModelStatus)> {
        self.slots.iter().map(|s| (s.section, &s.status))
    }
}

/// The loader thread: builds tasks one at a time, choosing the engine backend as `[engine]`
/// says (and reporting the choice), so no load ever stalls the pipeline.
fn load_forever(
    catalog: &Result<Catalog, String>,
    inbox: &mpsc::Receiver<Request>,
    outbox: &mpsc::Sender<Message>,
    shared: &Shared,
) {
    let mut engine: Option<(EngineSettings, Arc<Loader>, engine::Choice)> = None;
    while let Ok(request) = inbox.recv() {
        if engine.as_ref().map(|(s, ..)| s) != Some(&request.recipe.engine) {
            let (loader, choice) = engine::choose(&request.recipe.engine);
            tracing::info!(backend = choice.backend, reason = %choice.reason, "inference engine");
            shared.update_status(|status| status.engine = Some(choice.clone()));
            engine = Some((request.recipe.engine.clone(), loader, choice));
        }
        let (_, loader, choice) = engine.as_ref().expect("set above");
        if choice.runs && choice.backend == "tensorrt" {
            let detail = format!(
                "TensorRT builds its engine (minutes on a Jetson the first time; then read from {})",
                request.recipe.engine.cache_dir
            );
            let _ = outbox.send(Message::Loading {
                section: request.section,
                recipe: request.recipe.clone(),
                detail,
            });
        }
        let task = match catalog {
            Ok(catalog) => build_placed(request.section, &request.settings, catalog, loader),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        let loaded = Loaded {
            section: request.section,
            recipe: request.recipe,
            task,
        };
        if outbox.send(Message::Loaded(loaded)).is_err() {
            return;
        }
    }
}

/// Builds a section's task and says where its models (the hands task has two) run.
fn build_placed(
    section: &str,
    settings: &Settings,
    catalog: &Catalog,
    loader: &Arc<Loader>,
) -> anyhow::Result<(Box<dyn Task>, Placement)> {
    let placements = Arc::new(Mutex::new(Vec::new()));
    let recording: Arc<Loader> = {
        let (loader, placements) = (loader.clone(), placements.clone());
        Arc::new(move |path: &Path, input: &engine::ModelInput| {
            let engine = loader(path, input)?;
            placements
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(engine.placement());
            Ok(engine)
        })
    };
    let task = vision::build(
        section,
        settings,
        &vision::Context {
            catalog,
            loader: recording.as_ref(),
        },
    )?;
    let placements = placements.lock().unwrap_or_else(|p| p.into_inner());
    Ok((task, Placement::combine(&placements)))
}
