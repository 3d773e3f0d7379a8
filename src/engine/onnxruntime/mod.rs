//! The ONNX Runtime backend through `ort`, with the library loaded at run time: the PyPI
//! wheel's libonnxruntime.so here, an onnxruntime-gpu build on a GPU machine or a Jetson,
//! whose TensorRT and CUDA execution providers are registered here when asked for.

use super::{library, profile, DType, Engine, ModelInput, Placement, Tensor, TensorData};
use anyhow::Context;
use ort::ep::ExecutionProvider;
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

#[cfg(feature = "gpu")]
mod device;

/// The library can be loaded once per process; the first successful path wins.
static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

/// Loads the library (once) and returns the path it came from.
pub fn runtime(setting: &str) -> anyhow::Result<&'static Path> {
    let loaded = RUNTIME.get_or_init(|| {
        let mut tried = Vec::new();
        for path in library::candidates(setting) {
            // A bare name goes to the dynamic loader's search path; a path must exist.
            if path.components().count() > 1 && !path.exists() {
                continue;
            }
            match ort::init_from(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| b.build().map_err(|e| e.to_string()))
            {
                Ok(environment) => return Ok((path, environment)),
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
        Err(format!(
            "libonnxruntime.so not found or not loadable ({})",
            tried.join("; ")
        ))
    });
    match loaded {
        Ok((path, _)) => Ok(path),
        Err(e) => anyhow::bail!("{e}"),
    }
}

/// Where a session runs its graph; nodes a GPU provider cannot take go to ONNX Runtime's CPU
/// provider (reported in the model's placement).
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    Cpu,
    Cuda {
        device: i32,
    },
    TensorRt {
        device: i32,
        fp16: bool,
        /// Engines and timing caches: a Jetson's first build takes minutes, later starts read it.
        cache_dir: PathBuf,
    },
}

impl Provider {
    /// The CUDA device of a GPU provider.
    #[cfg(feature = "gpu")]
    fn gpu_device(&self) -> Option<i32> {
        match self {
            Provider::Cpu => None,
            Provider::Cuda { device } | Provider::TensorRt { device, .. } => Some(*device),
        }
    }

    /// Registers the provider on a session; ONNX Runtime's own error when it cannot start
    /// (its library, CUDA's or TensorRT's missing), never a quiet fall back to the CPU.
    /// `stream`: the CUDA stream the session computes on, where visiond's kernels queue its
    /// input (it must outlive the session); none: the provider's own. `graphs`: CUDA's
    /// provider captures the session's CUDA graph and replays it (its input and outputs
    /// must then be bound at fixed device addresses).
    fn register(
        &self,
        builder: &mut SessionBuilder,
        stream: Option<*mut ()>,
        graphs: bool,
    ) -> anyhow::Result<()> {
        // Full fp32, as on the CPU: with TensorFloat-32 convolutions MoveNet Lightning's
        // keypoints landed 4.8 px from the CPU's, without them 0.00 px (docs/gpu.md, runs of
        // 2026-12-02 and 12-03). Half precision is TensorRT's, by choice (`fp16`).
        let cuda = |device| {
            let cuda = ort::ep::CUDA::default()
                .with_device_id(device)
                .with_tf32(false)
                .with_cuda_graph(graphs);
            match stream {
                // SAFETY: the caller keeps the stream alive for as long as the session.
                Some(stream) => unsafe { cuda.with_compute_stream(stream) },
                None => cuda,
            }
        };
        match self {
            Provider::Cpu => Ok(()),
            Provider::Cuda { device } => cuda(*device)
                .register(builder)
                .map_err(|e| anyhow::anyhow!("CUDA execution provider: {e}")),
            Provider::TensorRt {
                device,
                fp16,
                cache_dir,
            } => {
                let cache = cache_dir.join("tensorrt").display().to_string();
                ort::ep::TensorRT::default()
                    .with_device_id(*device)
                    .with_fp16(*fp16)
                    .with_engine_cache(true)
                    .with_engine_cache_path(&cache)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&cache)
                    .register(builder)
                    .map_err(|e| anyhow::anyhow!("TensorRT execution provider: {e}"))?;
                // What TensorRT does not take runs on CUDA rather than the CPU.
                cuda(*device)
                    .register(builder)
                    .map_err(|e| anyhow::anyhow!("CUDA execution provider: {e}"))
            }
        }
    }
}

/// How a session on a GPU provider uses the GPU beyond its inference (`[engine]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuUse {
    /// The input made from frames on the device (`frame_on_gpu`).
    pub frame_on_gpu: bool,
    /// Such a session run as a CUDA graph on CUDA's provider (`cuda_graphs`).
    pub cuda_graphs: bool,
}

/// Loads the library and registers `provider` on a scratch session: whether it starts here.
pub fn probe(library: &str, provider: &Provider) -> anyhow::Result<&'static Path> {
    let path = runtime(library)?;
    let mut builder = Session::builder(environment()?).map_err(|e| anyhow::anyhow!("{e}"))?;
    provider.register(&mut builder, None, false)?;
    Ok(path)
}

fn environment() -> anyhow::Result<&'static ort::environment::Environment> {
    RUNTIME
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|(_, environment)| environment)
        .context("onnxruntime is not loaded")
}

/// Fields drop in this order: the bound tensors before the session (they go back to the
/// session's allocator), the session before its stream.
pub struct OrtEngine {
    /// The input and outputs on the GPU, where visiond's kernels write and read them.
    #[cfg(feature = "gpu")]
    bound: Option<device::Bound>,
    session: Session,
    input: String,
    outputs: Vec<String>,
    placement: Placement,
    /// The CUDA stream the session computes on, when its input is on the GPU.
    #[cfg(feature = "gpu")]
    _stream: Option<device::Stream>,
}

impl OrtEngine {
    /// Loads `path` for `input` on `provider`. `gpu.frame_on_gpu`: on a GPU provider, take
    /// an input made from whole frames on the device (`Engine::run_filled`) when a GPU is
    /// usable here; `gpu.cuda_graphs`: on CUDA's provider, run such a model as a CUDA graph.
    pub fn load(
        path: &Path,
        input: &ModelInput,
        threads: usize,
        library: &str,
        provider: &Provider,
        gpu: GpuUse,
    ) -> anyhow::Result<OrtEngine> {
        runtime(library)?;
        // Loading allocates on the GPU: not while another session captures its graph.
        #[cfg(feature = "gpu")]
        let _gate = provider.gpu_device().map(|_| device::gate::shared());
        let environment = environment()?;
        if let Provider::TensorRt { cache_dir, .. } = provider {
            let cache = cache_dir.join("tensorrt");
            std::fs::create_dir_all(&cache)
                .with_context(|| format!("cannot create {}", cache.display()))?;
        }
        // No spinning: the pipeline runs several sessions in turn, each with its own thread
        // pool, and threads left spinning after one model's run take the cores from the next
        // (six models in turn: 281 ms of inference a frame with it, 187 ms without).
        let mut builder = Session::builder(environment)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_intra_op_spinning(false)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if threads > 0 {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        #[cfg(feature = "gpu")]
        let stream = provider
            .gpu_device()
            .filter(|_| gpu.frame_on_gpu && input.io != super::Io::Host)
            .and_then(|device| device::Stream::new(device as usize));
        #[cfg(feature = "gpu")]
        let graphs =
            gpu.cuda_graphs && stream.is_some() && matches!(provider, Provider::Cuda { .. });
        #[cfg(feature = "gpu")]
        provider.register(
            &mut builder,
            stream.as_ref().map(device::Stream::raw),
            graphs,
        )?;
        // Without the GPU feature every input is a host tensor.
        #[cfg(not(feature = "gpu"))]
        let _ = (gpu.frame_on_gpu, gpu.cuda_graphs, input.io);
        #[cfg(not(feature = "gpu"))]
        provider.register(&mut builder, None, false)?;
        let mut builder = builder
            .with_profiling(profile_prefix())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let session = builder
            .commit_from_file(path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot load {}", path.display()))?;
        let input_name = match input.name.as_str() {
            "" => session
                .inputs()
                .first()
                .context("the model has no input")?
                .name()
                .to_owned(),
            name if session.inputs().iter().any(|i| i.name() == name) => name.to_owned(),
            name => anyhow::bail!("the model has no input named {name:?}"),
        };
        let available: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        let outputs = if input.outputs.is_empty() {
            available.clone()
        } else {
            input.outputs.clone()
        };
        if let Some(missing) = outputs.iter().find(|o| !available.contains(o)) {
            anyhow::bail!("the model has no output named {missing:?} (it has {available:?})");
        }
        let mut engine = OrtEngine {
            #[cfg(feature = "gpu")]
            bound: None,
            session,
            input: input_name,
            outputs,
            placement: Placement::default(),
            #[cfg(feature = "gpu")]
            _stream: None,
        };
        #[cfg(feature = "gpu")]
        if let Some(stream) = stream {
            let bound = device::Bound::bind(
                &mut engine.session,
                &engine.input,
                &engine.outputs,
                input,
                &stream,
                graphs,
            );
            // The session computes on the stream whether or not its input could be bound.
            engine._stream = Some(stream);
            match bound {
                Ok(bound) => engine.bound = Some(bound),
                // A graph replays fixed addresses: without them the session cannot run.
                Err(e) if graphs => {
                    return Err(e.context("CUDA graphs need the input and outputs on the GPU"))
                }
                Err(e) => tracing::warn!("{}: its input stays on the host: {e:#}", path.display()),
            }
        }
        engine.placement = engine.first_run(input)?;
        Ok(engine)
    }

    /// Runs the model once on zeros, profiled, so that the provider's setup (CUDA's
    /// convolution search) happens here rather than on the first frame, and reads from the
    /// profile where each node ran.
    fn first_run(&mut self, input: &ModelInput) -> anyhow::Result<Placement> {
        #[cfg(feature = "gpu")]
        if let Some(bound) = &self.bound {
            // Binding ran it, on the bound input's zeros.
            let cuda_graph = bound.graphs();
            let placement = self.end_profiling()?;
            return Ok(Placement {
                input_on_gpu: true,
                cuda_graph,
                ..placement
            });
        }
        let count = input.shape.iter().product();
        let zeros = Tensor {
            shape: input.shape.clone(),
            data: match input.dtype {
                DType::F32 => TensorData::F32(vec![0.0; count]),
                DType::I32 => TensorData::I32(vec![0; count]),
            },
        };
        self.run(&zeros).context("first run")?;
        self.end_profiling()
    }

    /// Where each node ran, from the profile of the runs so far (the first).
    fn end_profiling(&mut self) -> anyhow::Result<Placement> {
        let file = self
            .session
            .end_profiling()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let text = std::fs::read_to_string(&file);
        let _ = std::fs::remove_file(&file);
        profile::placement(&text.with_context(|| format!("cannot read {file}"))?)
    }
}

/// A fresh profile file name for each session (ONNX Runtime adds a timestamp and `.json`).
fn profile_prefix() -> PathBuf {
    static SESSIONS: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "visiond-profile-{}-{}",
        std::process::id(),
        SESSIONS.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Engine for OrtEngine {
    fn run(&mut self, input: &Tensor) -> anyhow::Result<Vec<Tensor>> {
        #[cfg(feature = "gpu")]
        if let Some(bound) = &mut self.bound {
            return bound.run_host(&mut self.session, input);
        }
        let shape: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
        // Views over our buffers: nothing is copied on the way in.
        let value = match &input.data {
            TensorData::F32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into_dyn(),
            TensorData::I32(v) => TensorRef::from_array_view((shape, v.as_slice()))?.into_dyn(),
        };
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => value])?;
        host_tensors(&outputs, &self.outputs)
    }

    #[cfg(feature = "gpu")]
    fn run_filled(&mut self, fill: &mut super::Fill<'_>) -> Option<anyhow::Result<Vec<Tensor>>> {
        let bound = self.bound.as_mut()?;
        Some(bound.run(&mut self.session, fill))
    }

    #[cfg(feature = "gpu")]
    fn run_on_device(
        &mut self,
        fill: &mut super::Fill<'_>,
        decode: &mut super::Decode<'_>,
    ) -> Option<anyhow::Result<()>> {
        let bound = self.bound.as_mut()?;
        Some(bound.run_on_device(&mut self.session, fill, decode))
    }

    #[cfg(feature = "gpu")]
    fn queue(&mut self, work: &mut super::Fill<'_>) -> Option<anyhow::Result<()>> {
        Some(self.bound.as_mut()?.queue(work))
    }

    fn placement(&self) -> Placement {
        self.placement.clone()
    }
}

/// The outputs `names`, copied out of ONNX Runtime's values.
fn host_tensors(
    outputs: &ort::session::SessionOutputs<'_>,
    names: &[String],
) -> anyhow::Result<Vec<Tensor>> {
    names
        .iter()
        .map(|name| {
            let output = &outputs[name.as_str()];
            let is_i32 = matches!(
                output.dtype(),
                ValueType::Tensor {
                    ty: ort::value::TensorElementType::Int32,
                    ..
                }
            );
            let (shape, data) = if is_i32 {
                let (shape, data) = output.try_extract_tensor::<i32>()?;
                (shape.to_vec(), TensorData::I32(data.to_vec()))
            } else {
                let (shape, data) = output.try_extract_tensor::<f32>()?;
                (shape.to_vec(), TensorData::F32(data.to_vec()))
            };
            Ok(Tensor {
                shape: shape.iter().map(|&d| d as usize).collect(),
                data,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{tract::TractEngine, DType, Io};

    #[test]
    fn matches_tract_on_a_shipped_model() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/movenet-lightning.onnx"
        ));
        let input = ModelInput {
            name: String::new(),
            shape: vec![1, 192, 192, 3],
            dtype: DType::I32,
            outputs: vec![],
            io: Io::Host,
        };
        let Ok(mut ort) = OrtEngine::load(path, &input, 1, "", &Provider::Cpu, GpuUse::default())
        else {
            panic!("libonnxruntime.so is missing: run tools/fetch-onnxruntime")
        };
        let placement = ort.placement();
        assert_eq!(
            (placement.provider.as_str(), placement.cpu_nodes),
            ("cpu", 0)
        );
        assert!(placement.nodes > 10, "{placement:?}");
        let mut tract = TractEngine::load(path, &input, 1).unwrap();
        let pixels = Tensor {
            shape: input.shape.clone(),
            data: TensorData::I32((0..192 * 192 * 3).map(|i: i32| i * 7 % 256).collect()),
        };
        let (a, b) = (ort.run(&pixels).unwrap(), tract.run(&pixels).unwrap());
        assert_eq!(a[0].shape, vec![1, 1, 17, 3]);
        assert_eq!(a[0].shape, b[0].shape);
        let largest_difference = a[0]
            .as_f32()
            .iter()
            .zip(b[0].as_f32().iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(largest_difference < 1e-3, "{largest_difference}");
    }
}
