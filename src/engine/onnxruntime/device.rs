//! A GPU session's input and outputs: ONNX Runtime tensors in device memory at fixed
//! addresses, bound once (IoBinding). visiond's kernels write the input in place on the
//! session's own compute stream, so that pre-processing and inference queue one after the
//! other with no copy and no wait between them; the outputs are copied down for tasks that
//! decode on the host, or read in place by tasks that decode with kernels of their own
//! (`Engine::run_on_device`). Fixed addresses also let ONNX Runtime replay a captured CUDA
//! graph (`[engine] cuda_graphs`).

use crate::engine::{DType, Decode, DeviceTensor, Fill, ModelInput, Tensor, TensorData};
use crate::gpu::{self, Gpu};
use cudarc::driver::result::{memcpy_dtoh_async, memcpy_htod_async};
use cudarc::driver::{CudaStream, DeviceRepr};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, TensorElementType, ValueType};
use std::sync::Arc;
use std::thread::ThreadId;

/// The stream a GPU session computes on, and its GPU. ONNX Runtime uses it until the session
/// is released: whoever holds the session drops this after it.
#[derive(Clone)]
pub struct Stream {
    gpu: &'static Gpu,
    stream: Arc<CudaStream>,
}

impl Stream {
    /// A new stream on GPU `device`; none where no GPU is usable here (`gpu::get` logs why).
    pub fn new(device: usize) -> Option<Stream> {
        let gpu = gpu::get(device).ok()?;
        match gpu.new_stream() {
            Ok(stream) => Some(Stream { gpu, stream }),
            Err(e) => {
                tracing::warn!("{e:#}");
                None
            }
        }
    }

    /// The driver's handle, for ONNX Runtime's `user_compute_stream`.
    pub fn raw(&self) -> *mut () {
        self.stream.cu_stream() as *mut ()
    }
}

/// Whoever holds the session drops this before it: the tensors go back to the session's
/// allocator, which lives as long as the session.
pub struct Bound {
    binding: IoBinding,
    input: Fixed,
    /// In `ModelInput::outputs` order, where the session writes them at every run. Fixed
    /// addresses are what CUDA graphs need, and the tasks copy down only what they decode.
    outputs: Vec<Fixed>,
    stream: Stream,
    /// With CUDA graphs: which runs may capture.
    graph_runs: Option<CaptureRuns>,
}

/// A tensor at a fixed device address, held by the binding.
struct Fixed {
    address: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl Fixed {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// ONNX Runtime captures a session's CUDA graph on the third run on a thread (two runs
/// first, for its memory arena), and keeps it for that thread.
const RUNS_UNTIL_CAPTURED: u32 = 3;

/// The thread that ran a graph session last and its runs in a row there: the first
/// `RUNS_UNTIL_CAPTURED` on a thread may capture, so they run alone.
struct CaptureRuns {
    thread: ThreadId,
    runs: u32,
}

impl CaptureRuns {
    /// After the session's first run, here.
    fn after_first_run() -> CaptureRuns {
        CaptureRuns {
            thread: std::thread::current().id(),
            runs: 1,
        }
    }

    /// Counts a run on this thread: whether it may capture.
    fn may_capture(&mut self) -> bool {
        let here = std::thread::current().id();
        if self.thread != here {
            (self.thread, self.runs) = (here, 0);
        }
        self.runs = self.runs.saturating_add(1);
        self.runs <= RUNS_UNTIL_CAPTURED
    }
}

impl Bound {
    /// Allocates `input` (zeros) on the session's device and binds it as tensor `name`, runs
    /// the session once on it (the first run, which sets up the provider), and binds each of
    /// `outputs` to a device tensor of the shape that run gave. `graphs`: the session was
    /// built to capture a CUDA graph.
    pub fn bind(
        session: &mut Session,
        name: &str,
        outputs: &[String],
        input: &ModelInput,
        stream: &Stream,
        graphs: bool,
    ) -> anyhow::Result<Bound> {
        let device = stream.gpu.context.ordinal() as i32;
        let on_device = MemoryInfo::new(
            AllocationDevice::CUDA,
            device,
            AllocatorType::Device,
            MemoryType::Default,
        )?;
        let allocator = Allocator::new(session, on_device.clone())?;
        let mut binding = session.create_binding()?;
        let (tensor, input_at) = allocate(&allocator, input.dtype, &input.shape, stream)?;
        // The binding holds the tensor itself (an owned tensor is not copied when bound).
        binding.bind_input(name, &tensor)?;
        for output in outputs {
            binding.bind_output_to_device(output.as_str(), &on_device)?;
        }
        let first = session.run_binding(&binding)?;
        let shapes = outputs
            .iter()
            .map(|name| {
                let ValueType::Tensor { ty, shape, .. } = first[name.as_str()].dtype() else {
                    anyhow::bail!("output {name} is not a tensor");
                };
                let dtype = match ty {
                    TensorElementType::Float32 => DType::F32,
                    TensorElementType::Int32 => DType::I32,
                    other => anyhow::bail!("output {name} holds {other:?}, not f32 or i32"),
                };
                Ok((dtype, shape.iter().map(|&d| d as usize).collect::<Vec<_>>()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        drop(first);
        let mut fixed = Vec::new();
        for (name, (dtype, shape)) in outputs.iter().zip(shapes) {
            let (tensor, address) = allocate(&allocator, dtype, &shape, stream)?;
            // The binding holds the tensor from here on.
            binding.bind_output(name.as_str(), tensor)?;
            fixed.push(Fixed {
                address,
                shape,
                dtype,
            });
        }
        Ok(Bound {
            binding,
            input: Fixed {
                address: input_at,
                shape: input.shape.clone(),
                dtype: input.dtype,
            },
            outputs: fixed,
            stream: stream.clone(),
            graph_runs: graphs.then(CaptureRuns::after_first_run),
        })
    }

    /// Whether the session was built to capture a CUDA graph.
    pub fn graphs(&self) -> bool {
        self.graph_runs.is_some()
    }

    /// Copies `tensor` into the bound input, runs the session, and returns the outputs on
    /// the host: a host tensor takes the same way as a filled one, so a captured CUDA graph
    /// always reads the input it is given.
    pub fn run_host(
        &mut self,
        session: &mut Session,
        tensor: &Tensor,
    ) -> anyhow::Result<Vec<Tensor>> {
        let dtype = match tensor.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I32(_) => DType::I32,
        };
        anyhow::ensure!(
            (&tensor.shape, dtype) == (&self.input.shape, self.input.dtype),
            "input {:?} {dtype:?}, the model was bound for {:?} {:?}",
            tensor.shape,
            self.input.shape,
            self.input.dtype
        );
        let (address, stream) = (self.input.address, self.stream.stream.cu_stream());
        self.run(session, &mut |gpu, _, _| {
            gpu.context.bind_to_thread()?;
            // SAFETY: the bound input holds as many 4-byte elements as `tensor`, which
            // outlives the copy (`run` waits for the stream before it returns).
            unsafe {
                match &tensor.data {
                    TensorData::F32(v) => memcpy_htod_async(address, v, stream),
                    TensorData::I32(v) => memcpy_htod_async(address, v, stream),
                }
            }?;
            Ok(())
        })
    }

    /// Lets `fill` write the input on the session's stream, runs the session on it, and
    /// returns the outputs on the host.
    pub fn run(
        &mut self,
        session: &mut Session,
        fill: &mut Fill<'_>,
    ) -> anyhow::Result<Vec<Tensor>> {
        let _gate = self.enter();
        self.queue_inside(fill)?;
        session.run_binding(&self.binding)?;
        let stream = &self.stream.stream;
        self.stream.gpu.context.bind_to_thread()?;
        let downloads: Vec<anyhow::Result<TensorData>> = self
            .outputs
            .iter()
            .map(|output| match output.dtype {
                DType::F32 => download(output, stream).map(TensorData::F32),
                DType::I32 => download(output, stream).map(TensorData::I32),
            })
            .collect();
        // Every queued copy is done before its vector can drop, error or not.
        let synchronized = stream.synchronize();
        let outputs = self
            .outputs
            .iter()
            .zip(downloads)
            .map(|(output, data)| {
                Ok(Tensor {
                    shape: output.shape.clone(),
                    data: data?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        synchronized?;
        Ok(outputs)
    }

    /// Lets `fill` write the input, runs the session on it, and lets `decode` read the
    /// outputs on the device, on the session's stream.
    pub fn run_on_device(
        &mut self,
        session: &mut Session,
        fill: &mut Fill<'_>,
        decode: &mut Decode<'_>,
    ) -> anyhow::Result<()> {
        let _gate = self.enter();
        self.queue_inside(fill)?;
        session.run_binding(&self.binding)?;
        let tensors = self
            .outputs
            .iter()
            .map(|output| {
                anyhow::ensure!(
                    output.dtype == DType::F32,
                    "an i32 output stays on the host"
                );
                Ok(DeviceTensor {
                    shape: output.shape.clone(),
                    address: output.address,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        decode(self.stream.gpu, &tensors, &self.stream.stream)
    }

    /// Lets `work` queue on the session's stream, ahead of the next run.
    pub fn queue(&mut self, work: &mut Fill<'_>) -> anyhow::Result<()> {
        let _gate = gate::shared();
        self.queue_inside(work)
    }

    fn queue_inside(&self, work: &mut Fill<'_>) -> anyhow::Result<()> {
        work(self.stream.gpu, self.input.address, &self.stream.stream)
    }

    /// The gate for a run: alone for the runs on a thread that may capture the session's
    /// CUDA graph (the first ones there), shared otherwise.
    fn enter(&mut self) -> gate::Gate {
        match self
            .graph_runs
            .as_mut()
            .is_some_and(CaptureRuns::may_capture)
        {
            true => gate::alone(),
            false => gate::shared(),
        }
    }
}

/// Queues the copy of `output` into a new host vector on `stream` (valid once it is
/// synchronised).
fn download<T: DeviceRepr + Default + Clone>(
    output: &Fixed,
    stream: &CudaStream,
) -> anyhow::Result<Vec<T>> {
    let mut host = vec![T::default(); output.len()];
    // SAFETY: the output holds `len` 4-byte elements; the caller waits for the stream
    // before reading `host`.
    unsafe { memcpy_dtoh_async(&mut host, output.address, stream.cu_stream()) }?;
    Ok(host)
}

/// A tensor of `dtype` and `shape` from `allocator` (device memory), zeroed on `stream`,
/// and its device address.
fn allocate(
    allocator: &Allocator,
    dtype: DType,
    shape: &[usize],
    stream: &Stream,
) -> anyhow::Result<(DynTensor, u64)> {
    let element = match dtype {
        DType::F32 => TensorElementType::Float32,
        DType::I32 => TensorElementType::Int32,
    };
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let mut tensor = DynTensor::new(allocator, element, dims)?;
    let address = tensor.data_ptr_mut() as u64;
    // Both types are 4 bytes an element.
    let bytes = shape.iter().product::<usize>() * 4;
    stream.gpu.context.bind_to_thread()?;
    // SAFETY: `address` is the start of the tensor's `bytes` on this device.
    unsafe {
        cudarc::driver::result::memset_d8_async(address, 0, bytes, stream.stream.cu_stream())
    }?;
    Ok((tensor, address))
}

/// ONNX Runtime captures a CUDA graph in CUDA's global capture mode: while one thread
/// captures, a call from any other thread that is not allowed during a capture (an
/// allocation, a synchronous copy, a wait on a stream) fails and spoils the capture. So every
/// GPU session's work (loading included) holds this gate shared, and the runs that may
/// capture hold it alone.
pub mod gate {
    use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

    static GATE: RwLock<()> = RwLock::new(());

    /// Held for as long as the work it lets through.
    pub enum Gate {
        Shared {
            _held: RwLockReadGuard<'static, ()>,
        },
        Alone {
            _held: RwLockWriteGuard<'static, ()>,
        },
    }

    pub fn shared() -> Gate {
        Gate::Shared {
            _held: GATE.read().unwrap_or_else(|p| p.into_inner()),
        }
    }

    pub fn alone() -> Gate {
        Gate::Alone {
            _held: GATE.write().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_runs_on_each_thread_may_capture_and_the_rest_do_not() {
        // Loaded (the first run) on this thread: two more here may capture.
        let mut runs = CaptureRuns::after_first_run();
        let here: Vec<bool> = (0..4).map(|_| runs.may_capture()).collect();
        assert_eq!(here, [true, true, false, false]);
        // A lane's thread starts its own count: ONNX Runtime captures there anew.
        let there =
            std::thread::spawn(move || (0..5).map(|_| runs.may_capture()).collect::<Vec<_>>())
                .join()
                .unwrap();
        assert_eq!(there, [true, true, true, false, false]);
    }
}
