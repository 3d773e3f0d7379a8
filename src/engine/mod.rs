//! Inference behind one small trait. Backends: ONNX Runtime (`ort`, loaded at run time; on a
//! Jetson its TensorRT and CUDA execution providers) and tract (pure Rust, always built, the
//! fallback). Model-specific pre- and post-processing live with each task in `vision/`.

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

/// Loads `file` for `input` with the backend `backend` names ("tract", "onnxruntime").
pub type Loader = dyn Fn(&Path, &ModelInput) -> anyhow::Result<Box<dyn Engine>> + Send + Sync;
