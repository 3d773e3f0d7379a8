//! The six model tasks. Each owns its model(s) and does its own pre-processing, decoding
//! and drawing; the engine only runs tensors.

pub mod catalog;
pub mod overlay;
pub mod preprocess;

use crate::engine::Loader;
use crate::media::Frame;
use crate::settings::{schema::MODEL_SECTIONS, Settings};
use catalog::Catalog;
use serde_json::Value as Json;

/// One model task, driven by the pipeline thread frame after frame.
pub trait Task: Send {
    /// Runs the model(s) on `frame` and keeps the result for `draw` and `result`.
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()>;
    /// Draws the last result onto `frame` (the same size as the frame processed).
    fn draw(&self, frame: &mut Frame, settings: &Settings);
    /// The last result, in the shape `/api/v1/results` gives for this task.
    fn result(&self) -> Json;
}

/// What building a task needs besides its settings.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub loader: &'a Loader,
}

/// The order tasks draw in: background replacement first (it repaints pixels), then the
/// overlays, text last so it stays readable.
pub const DRAW_ORDER: [&str; 6] = [
    "background",
    "segmentation",
    "detection",
    "pose",
    "classification",
    "action",
];

/// A model's `network` setting, resolved.
pub enum Network<'a> {
    /// A catalog name: its entry says everything about the file.
    Catalog(&'a catalog::Entry, std::path::PathBuf),
    /// A path to an ONNX file the user brought; the task applies its conventions
    /// (jetson-inference's for its models) and the section's labels/input_layer/output_layer.
    File(std::path::PathBuf),
}

/// Resolves a `network` setting: a catalog name, else a path to an existing ONNX file.
pub fn resolve<'a>(network: &str, catalog: &'a Catalog) -> anyhow::Result<Network<'a>> {
    if let Some(entry) = catalog.get(network) {
        return Ok(Network::Catalog(entry, catalog.path_of(entry)));
    }
    let path = std::path::PathBuf::from(network);
    if path.is_file() {
        return Ok(Network::File(path));
    }
    anyhow::bail!("{network:?} is neither a catalog model (see `visiond models`) nor an ONNX file")
}

/// Builds the task of `section` for the network its settings name.
pub fn build(section: &str, settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    debug_assert!(MODEL_SECTIONS.contains(&section));
    let _ = (settings, ctx);
    anyhow::bail!("the {section} task is not built yet")
}
