//! Inference behind one small trait. Backends: ONNX Runtime (`ort`, loaded at run time; on a
//! Jetson its TensorRT and CUDA execution providers) and tract (pure Rust, always built, the
//! fallback). Model-specific pre- and post-processing live with each task in `vision/`.

pub mod onnxruntime;
pub mod tract;

use std::path::Path;

/// A tensor going in or out of a model: shape and data, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            shape,
            data: TensorData::F32(data),
        }
    }

    /// The data as f32; integer outputs are converted.
    pub fn as_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match &self.data {
            TensorData::F32(v) => std::borrow::Cow::Borrowed(v),
            TensorData::I32(v) => std::borrow::Cow::Owned(v.iter().map(|&x| x as f32).collect()),
        }
    }
}

/// What a task asks of a model file.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Input tensor name; empty: the model's first input.
    pub name: String,
    /// The concrete input shape the task feeds (dynamic axes fixed here, so backends can plan).
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Output names in the order the task wants them; empty: the model's outputs in order.
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DType {
    F32,
    I32,
}

/// A loaded model, ready to run. One per task; used from the pipeline thread only.
pub trait Engine: Send {
    /// Runs the model on one input; returns the outputs in `ModelInput::outputs` order.
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>>;
}

/// Loads a model file for a task's input with the chosen backend.
pub type Loader = dyn Fn(&Path, &ModelInput) -> anyhow::Result<Box<dyn Engine>> + Send + Sync;

/// The backend in use and why, for `/api/v1/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choice {
    pub backend: &'static str,
    pub reason: String,
    pub threads: usize,
}

/// Picks the backend `[engine]` asks for, falling back to tract (always built) when it
/// cannot run here, and says why.
pub fn choose(settings: &crate::settings::typed::Engine) -> (std::sync::Arc<Loader>, Choice) {
    let threads = match settings.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n as usize,
    };
    let onnxruntime =
        || onnxruntime::runtime(&settings.onnxruntime_lib).map(|p| p.display().to_string());
    let (backend, reason) = match settings.backend.as_str() {
        "tract" => ("tract", "chosen in [engine] backend".to_owned()),
        "auto" => match onnxruntime() {
            Ok(path) => ("onnxruntime", format!("auto: the fastest present ({path})")),
            Err(e) => ("tract", format!("auto: {e}")),
        },
        requested => {
            let why = match requested {
                "onnxruntime" => None,
                _ => Some(format!("{requested} is not built into this binary")),
            };
            match (why, onnxruntime()) {
                (None, Ok(path)) => (
                    "onnxruntime",
                    format!("chosen in [engine] backend ({path})"),
                ),
                (Some(why), Ok(path)) => {
                    ("onnxruntime", format!("{why}; using onnxruntime ({path})"))
                }
                (why, Err(e)) => (
                    "tract",
                    format!("{}; using tract", why.unwrap_or_else(|| e.to_string())),
                ),
            }
        }
    };
    let library = settings.onnxruntime_lib.clone();
    let loader: std::sync::Arc<Loader> = match backend {
        "onnxruntime" => std::sync::Arc::new(move |path: &Path, input: &ModelInput| {
            Ok(Box::new(onnxruntime::OrtEngine::load(
                path, input, threads, &library,
            )?) as Box<dyn Engine>)
        }),
        _ => std::sync::Arc::new(move |path: &Path, input: &ModelInput| {
            Ok(Box::new(tract::TractEngine::load(path, input, threads)?) as Box<dyn Engine>)
        }),
    };
    (
        loader,
        Choice {
            backend,
            reason,
            threads,
        },
    )
}
