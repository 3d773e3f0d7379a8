//! Inference behind one small trait. Backends: ONNX Runtime (`ort`, loaded at run time) with
//! its TensorRT or CUDA execution provider or on the CPU, and tract (pure Rust, always built,
//! the fallback). Model-specific pre- and post-processing live with each task in `vision/`.

mod choose;
pub mod library;
pub mod onnxruntime;
mod profile;
pub mod tract;

pub use choose::{choose, Backend, Choice};

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
    /// What the task does with the input and outputs, which says where they may live.
    pub io: Io,
}

/// What a task does with a model's input and outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Io {
    /// It builds the input on the host (crops of its own) and decodes the outputs there.
    Host,
    /// It makes the input from whole frames (`InputSpec::run`, or an action clip of them):
    /// an engine on a GPU then takes it on the device, where the task's kernels write it.
    /// The outputs come to the host.
    Frames,
    /// As `Frames`, and where the input is on the GPU, the task's kernels decode the outputs
    /// there too (`Engine::run_on_device`) and bring down only what it needs.
    FramesDecodedOnGpu,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DType {
    F32,
    I32,
}

/// Writes a model's input in place on the GPU: given the GPU, the input tensor's device
/// address and the session's stream, queues the work that fills it.
#[cfg(feature = "gpu")]
pub type Fill<'a> = dyn FnMut(
        &'static crate::gpu::Gpu,
        u64,
        &std::sync::Arc<cudarc::driver::CudaStream>,
    ) -> anyhow::Result<()>
    + 'a;

/// A model output left on the GPU: its shape and device address (f32 values), valid while
/// the `Decode` given it runs.
#[cfg(feature = "gpu")]
pub struct DeviceTensor {
    pub shape: Vec<usize>,
    pub address: u64,
}

/// Reads a model's outputs where they are on the GPU (in `ModelInput::outputs` order), on the
/// session's stream, and brings down what the task needs.
#[cfg(feature = "gpu")]
pub type Decode<'a> = dyn FnMut(
        &'static crate::gpu::Gpu,
        &[DeviceTensor],
        &std::sync::Arc<cudarc::driver::CudaStream>,
    ) -> anyhow::Result<()>
    + 'a;

/// A loaded model, ready to run. One per task; used from the pipeline thread only.
pub trait Engine: Send {
    /// Runs the model on one input; returns the outputs in `ModelInput::outputs` order.
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>>;
    /// Runs the model on an input that `fill` writes on the GPU, where the model reads it
    /// in place; `None` when this engine takes no device input (the caller then passes a
    /// host tensor to `run`).
    #[cfg(feature = "gpu")]
    fn run_filled(&mut self, _fill: &mut Fill<'_>) -> Option<anyhow::Result<Vec<Tensor>>> {
        None
    }
    /// As `run_filled`, for a model loaded with `Io::FramesDecodedOnGpu`: its outputs stay on
    /// the GPU, where `decode` reads them. `None` when this engine takes no device input.
    #[cfg(feature = "gpu")]
    fn run_on_device(
        &mut self,
        _fill: &mut Fill<'_>,
        _decode: &mut Decode<'_>,
    ) -> Option<anyhow::Result<()>> {
        None
    }
    /// Lets `work` queue on the GPU stream the model computes on, before its next run and
    /// without one: a task whose input is made over several frames (a clip) writes each
    /// frame's part as it comes. `None` when this engine takes no device input.
    #[cfg(feature = "gpu")]
    fn queue(&mut self, _work: &mut Fill<'_>) -> Option<anyhow::Result<()>> {
        None
    }
    /// Where the model's graph runs, for `/api/v1/status` and `/metrics`.
    fn placement(&self) -> Placement;
}

/// Which provider a loaded model really runs on, read from ONNX Runtime's profile of its first
/// run (so a provider that took no node is not reported as used).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Placement {
    /// tensorrt | cuda | cpu (ONNX Runtime's own) | tract
    pub provider: String,
    /// Graph nodes ONNX Runtime put on its CPU provider although `provider` is a GPU one.
    pub cpu_nodes: usize,
    /// Graph nodes in all (after ONNX Runtime's fusions); 0 for tract.
    pub nodes: usize,
    /// Why the model is not on the backend `auto` chose (its session would not start there).
    pub fallback: Option<String>,
    /// Whether its input is written on the GPU, where the model reads it in place (the frame
    /// goes up once; `engine.frame_on_gpu`), rather than copied up from a host tensor.
    pub input_on_gpu: bool,
    /// Whether CUDA's provider runs it as a CUDA graph (`engine.cuda_graphs`).
    pub cuda_graph: bool,
}

impl Placement {
    /// Whether the session runs on a GPU provider.
    pub fn is_on_gpu(&self) -> bool {
        matches!(self.provider.as_str(), "cuda" | "tensorrt")
    }

    /// The placements of a task's models together (the hands task runs two).
    pub fn combine(placements: &[Placement]) -> Placement {
        let mut providers: Vec<&str> = placements.iter().map(|p| p.provider.as_str()).collect();
        providers.dedup();
        let fallbacks: Vec<&str> = placements
            .iter()
            .filter_map(|p| p.fallback.as_deref())
            .collect();
        Placement {
            provider: providers.join("+"),
            cpu_nodes: placements.iter().map(|p| p.cpu_nodes).sum(),
            nodes: placements.iter().map(|p| p.nodes).sum(),
            fallback: (!fallbacks.is_empty()).then(|| fallbacks.join("; ")),
            input_on_gpu: placements.iter().all(|p| p.input_on_gpu),
            cuda_graph: placements.iter().all(|p| p.cuda_graph),
        }
    }
}

/// Loads a model file for a task's input with the chosen backend.
pub type Loader = dyn Fn(&Path, &ModelInput) -> anyhow::Result<Box<dyn Engine>> + Send + Sync;
