//! What the tasks' tests share: the shipped catalog, tract as the loader, default settings,
//! the darknet pictures and their reference results, and a place for annotated pictures.

use super::catalog::Catalog;
use super::Context;
use crate::engine::tract::TractEngine;
use crate::engine::{Engine, ModelInput};
use crate::media::Frame;
use crate::settings::{values::Values, Settings};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

pub struct Env {
    pub catalog: Catalog,
    pub settings: Settings,
}

impl Env {
    pub fn new() -> Env {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        Env {
            catalog: Catalog::open(&models).unwrap(),
            settings: Values::defaults().to_settings(),
        }
    }

    pub fn context(&self) -> Context<'_> {
        Context {
            catalog: &self.catalog,
            loader: &tract_loader,
        }
    }
}

fn tract_loader(path: &Path, input: &ModelInput) -> anyhow::Result<Box<dyn Engine>> {
    Ok(Box::new(TractEngine::load(path, input, 1)?))
}

impl Env {
    /// As `context`, with engines that say they take their input on the GPU and then fail
    /// every GPU call, as a GPU path that breaks would; host tensors still run.
    #[cfg(feature = "gpu")]
    pub fn context_failing_on_gpu(&self) -> Context<'_> {
        Context {
            catalog: &self.catalog,
            loader: &failing_on_gpu_loader,
        }
    }
}

#[cfg(feature = "gpu")]
fn failing_on_gpu_loader(path: &Path, input: &ModelInput) -> anyhow::Result<Box<dyn Engine>> {
    Ok(Box::new(FailsOnGpu(tract_loader(path, input)?)))
}

#[cfg(feature = "gpu")]
struct FailsOnGpu(Box<dyn Engine>);

/// What every GPU call of `FailsOnGpu` answers.
#[cfg(feature = "gpu")]
fn gone<T>() -> Option<anyhow::Result<T>> {
    Some(Err(anyhow::anyhow!("the GPU is gone")))
}

#[cfg(feature = "gpu")]
impl Engine for FailsOnGpu {
    fn run(&mut self, input: &crate::engine::Tensor) -> anyhow::Result<Vec<crate::engine::Tensor>> {
        self.0.run(input)
    }

    fn run_filled(
        &mut self,
        _: &mut crate::engine::Fill<'_>,
    ) -> Option<anyhow::Result<Vec<crate::engine::Tensor>>> {
        gone()
    }

    fn run_on_device(
        &mut self,
        _: &mut crate::engine::Fill<'_>,
        _: &mut crate::engine::Decode<'_>,
    ) -> Option<anyhow::Result<()>> {
        gone()
    }

    fn queue(&mut self, _: &mut crate::engine::Fill<'_>) -> Option<anyhow::Result<()>> {
        gone()
    }

    fn placement(&self) -> crate::engine::Placement {
        crate::engine::Placement {
            input_on_gpu: true,
            ..self.0.placement()
        }
    }
}

/// A file of tests/data, as a path string (the form settings take).
pub fn data(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/").to_owned() + name
}

/// A darknet picture of tests/data by name ("dog").
pub fn picture(name: &str) -> Frame {
    Frame::load(Path::new(&data(&format!("{name}.jpg")))).unwrap()
}

/// tests/data/model-reference.json: what the Python reference decoders found.
pub fn reference() -> Json {
    let text = std::fs::read_to_string(data("model-reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Saves `frame` as `$CARGO_TARGET_DIR/annotated/<name>` (or target/annotated), for eyes.
pub fn save_annotated(frame: &Frame, name: &str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("annotated");
    std::fs::create_dir_all(&dir).unwrap();
    frame.save(&dir.join(name)).unwrap();
}
