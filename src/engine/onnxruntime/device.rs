//! A session's input on the GPU: an ONNX Runtime tensor in device memory at a fixed address,
//! bound once (IoBinding) and written in place by visiond's kernels on the session's own
//! compute stream, so that pre-processing and inference queue one after the other with no
//! copy and no wait between them. Outputs come back to the host, where the tasks decode
//! them (ONNX Runtime copies them at the end of the run), or, for a task that decodes them
//! with kernels of its own (`Io::FramesDecodedOnGpu`), stay on the device.

use super::host_tensors;
use crate::engine::{DType, Decode, DeviceTensor, Fill, Io, ModelInput, Tensor};
use crate::gpu::{self, Gpu};
use cudarc::driver::CudaStream;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, TensorElementType, TensorValueType};
use std::sync::Arc;

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
pub struct Input {
    binding: IoBinding,
    /// Held for its memory, which the binding reads at `address`.
    _tensor: DynTensor,
    address: u64,
    output_names: Vec<String>,
    /// Whether the outputs are bound on the device (`Io::FramesDecodedOnGpu`).
    outputs_on_device: bool,
    stream: Stream,
}

impl Input {
    /// Allocates `input` (zeros) on the session's device and binds it as tensor `name`, and
    /// `outputs` to the host, or to the device where the task decodes them there.
    pub fn bind(
        session: &Session,
        name: &str,
        outputs: &[String],
        input: &ModelInput,
        stream: &Stream,
    ) -> anyhow::Result<Input> {
        let device = stream.gpu.context.ordinal() as i32;
        let on_device = || {
            MemoryInfo::new(
                AllocationDevice::CUDA,
                device,
                AllocatorType::Device,
                MemoryType::Default,
            )
        };
        let allocator = Allocator::new(session, on_device()?)?;
        let (tensor, address) = allocate(&allocator, input.dtype, &input.shape, stream)?;
        let mut binding = session.create_binding()?;
        binding.bind_input(name, &tensor)?;
        let outputs_on_device = input.io == Io::FramesDecodedOnGpu;
        let outputs_at = match outputs_on_device {
            true => on_device()?,
            false => MemoryInfo::default(),
        };
        for output in outputs {
            binding.bind_output_to_device(output.as_str(), &outputs_at)?;
        }
        Ok(Input {
            binding,
            _tensor: tensor,
            address,
            output_names: outputs.to_vec(),
            outputs_on_device,
            stream: stream.clone(),
        })
    }

    /// Lets `fill` write the input on the session's stream, runs the session on it, and
    /// returns the outputs on the host.
    pub fn run(&self, session: &mut Session, fill: &mut Fill<'_>) -> anyhow::Result<Vec<Tensor>> {
        anyhow::ensure!(
            !self.outputs_on_device,
            "the outputs are bound on the GPU: run_on_device reads them"
        );
        self.queue(fill)?;
        let outputs = session.run_binding(&self.binding)?;
        host_tensors(&outputs, &self.output_names)
    }

    /// Lets `fill` write the input, runs the session on it, and lets `decode` read the
    /// outputs on the device, on the session's stream.
    pub fn run_on_device(
        &self,
        session: &mut Session,
        fill: &mut Fill<'_>,
        decode: &mut Decode<'_>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.outputs_on_device,
            "the outputs are bound on the host: run reads them"
        );
        self.queue(fill)?;
        let outputs = session.run_binding(&self.binding)?;
        let tensors = self
            .output_names
            .iter()
            .map(|name| {
                let output = outputs[name.as_str()]
                    .view()
                    .downcast::<TensorValueType<f32>>()?;
                Ok(DeviceTensor {
                    shape: output.shape().iter().map(|&d| d as usize).collect(),
                    address: output.data_ptr() as u64,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The outputs' memory is held until `outputs` drops, after the decoding has brought
        // down what it needs (a copy that waits for the kernels before it).
        decode(self.stream.gpu, &tensors, &self.stream.stream)
    }

    /// The first run, on whatever the input holds, its outputs left where they are.
    pub fn warm_up(&self, session: &mut Session) -> anyhow::Result<()> {
        session.run_binding(&self.binding)?;
        Ok(())
    }

    /// Lets `work` queue on the session's stream, ahead of the next run.
    pub fn queue(&self, work: &mut Fill<'_>) -> anyhow::Result<()> {
        work(self.stream.gpu, self.address, &self.stream.stream)
    }
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
