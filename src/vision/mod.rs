//! The six model tasks. Each owns its model(s) and does its own pre-processing, decoding
//! and drawing; the engine only runs tensors.

pub mod action;
pub mod background;
pub mod catalog;
pub mod classification;
pub mod detection;
mod hands;
mod jetson;
mod keypoints;
pub mod layer;
mod mask;
pub mod overlay;
pub mod pose;
pub mod preprocess;
mod scores;
pub mod segmentation;
#[cfg(test)]
mod testing;
mod tracker;
mod trt_pose;

use crate::engine::{Engine, Io, Loader, ModelInput};
use crate::media::Frame;
use crate::settings::{schema::MODEL_SECTIONS, typed::Model, Settings};
use catalog::Catalog;
use preprocess::InputSpec;
use serde_json::Value as Json;
use std::path::Path;

/// One model task, driven by the pipeline thread frame after frame.
pub trait Task: Send {
    /// Runs the model(s) on `frame` and keeps the result for `draw` and `result`.
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()>;
    /// The last result as a full-frame layer, if the task paints one (`layer`): painted
    /// before any task draws, on the GPU where the frame is.
    fn layer(&self, _settings: &Settings) -> Option<layer::Layer<'_>> {
        None
    }
    /// Draws the rest of the last result (boxes, labels, keypoints) onto `frame`, the same
    /// size as the frame processed.
    fn draw(&self, _frame: &mut Frame, _settings: &Settings) {}
    /// The last result, in the shape `/api/v1/results` gives for this task.
    fn result(&self) -> Json;
    /// Frames it must see before it has a result (a clip for action recognition); a still
    /// picture is shown this many times.
    fn frames_needed(&self, _settings: &Settings) -> usize {
        1
    }
}

/// What building a task needs besides its settings.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub loader: &'a Loader,
}

impl Context<'_> {
    /// Loads the picture model at `path`, fed tensors of `input` at tensor `name`, giving
    /// `outputs` (empty: all, in the file's order); `io`: what the task does with them.
    pub fn load_picture_model(
        &self,
        path: &Path,
        input: &InputSpec,
        (name, outputs): (String, Vec<String>),
        io: Io,
    ) -> anyhow::Result<Box<dyn Engine>> {
        let model_input = ModelInput {
            name,
            shape: input.shape(),
            dtype: input.dtype,
            outputs,
            io,
        };
        (self.loader)(path, &model_input)
    }
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

/// Draws `tasks`' last results on `frame`, in the order given (`DRAW_ORDER`, whose tasks
/// with layers come first): their layers together, on the GPU if the frame is there, then
/// their drawings on the CPU.
pub fn draw(tasks: &[&dyn Task], frame: &mut Frame, settings: &Settings) {
    let layers: Vec<_> = tasks.iter().filter_map(|t| t.layer(settings)).collect();
    layer::paint(frame, &layers);
    frame.forget_gpu_copy();
    for task in tasks {
        task.draw(frame, settings);
    }
}

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

impl Network<'_> {
    /// The labels: the section's `labels` file when set, else the catalog entry's (a custom
    /// file without a labels file has none: its classes show as numbers).
    pub fn labels(&self, model: &Model, catalog: &Catalog) -> anyhow::Result<Vec<String>> {
        match self {
            _ if !model.labels.is_empty() => catalog::read_labels(Path::new(&model.labels)),
            Network::Catalog(entry, _) => catalog.labels(entry),
            Network::File(_) => Ok(Vec::new()),
        }
    }
}

/// The input and output tensor names of a custom file: the section's `input_layer` and
/// `output_layer` (comma-separated) where set, else the convention's `input`, `outputs`.
pub fn custom_layers(model: &Model, input: &str, outputs: &[&str]) -> (String, Vec<String>) {
    let input = match model.input_layer.trim() {
        "" => input.to_owned(),
        name => name.to_owned(),
    };
    let named: Vec<String> = model
        .output_layer
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let outputs = if named.is_empty() {
        outputs.iter().map(|&name| name.to_owned()).collect()
    } else {
        named
    };
    (input, outputs)
}

/// Label `id` of `labels`, or its number where the labels run short.
pub fn label_of(labels: &[String], id: usize) -> std::borrow::Cow<'_, str> {
    match labels.get(id) {
        Some(label) => label.into(),
        None => format!("class {id}").into(),
    }
}

/// A score for the results JSON: 4 decimals, not f32 noise like 0.30500000715.
pub fn score_json(score: f32) -> Json {
    Json::from((f64::from(score) * 1e4).round() / 1e4)
}

/// Builds the task of `section` for the network its settings name.
pub fn build(section: &str, settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    debug_assert!(MODEL_SECTIONS.contains(&section));
    match section {
        "classification" => classification::build(settings, ctx),
        "detection" => detection::build(settings, ctx),
        "segmentation" => segmentation::build(settings, ctx),
        "pose" => pose::build(settings, ctx),
        "action" => action::build(settings, ctx),
        "background" => background::build(settings, ctx),
        _ => anyhow::bail!("{section:?} is not a model section"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_layers_default_to_the_convention() {
        let mut model = testing::Env::new().settings.detection.model;
        let (input, outputs) = custom_layers(&model, "input_0", &["scores", "boxes"]);
        assert_eq!(
            (input.as_str(), outputs),
            ("input_0", vec!["scores".into(), "boxes".into()])
        );
        model.input_layer = " data ".into();
        model.output_layer = "conf, loc,".into();
        let (input, outputs) = custom_layers(&model, "input_0", &["scores", "boxes"]);
        assert_eq!(
            (input.as_str(), outputs),
            ("data", vec!["conf".into(), "loc".into()])
        );
        assert_eq!(label_of(&["a".into()], 0), "a");
        assert_eq!(label_of(&["a".into()], 3), "class 3");
        assert_eq!(score_json(0.305), serde_json::json!(0.305));
    }

    #[test]
    fn builds_the_tasks_of_model_sections() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        for section in MODEL_SECTIONS {
            let task = build(section, &settings, &env.context()).unwrap();
            assert!(
                !task.result().is_object(),
                "{section}: no result before a frame"
            );
        }
        settings.detection.model.network = "no-such-model".into();
        let error = build("detection", &settings, &env.context()).err().unwrap();
        assert!(
            error.to_string().contains("neither a catalog model"),
            "{error}"
        );
    }
}
