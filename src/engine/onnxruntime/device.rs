//! A session's input on the GPU: an ONNX Runtime tensor in device memory at a fixed address,
//! bound once (IoBinding) and written in place by visiond's kernels on the session's own
//! compute stream, so that pre-processing and inference queue one after the other with no
//! copy and no wait between them.
//!
//! Outputs come back to the host, where the tasks decode them: copied by ONNX Runtime, or,
//! for a session replayed as a CUDA graph (whose every address must stay fixed), bound to
//! device tensors of their own and copied back here on the same stream.

use super::host_tensors;
use crate::engine::{DType, Fill, ModelInput, Tensor, TensorData};
use crate::gpu::{self, Gpu};
use cudarc::driver::CudaStream;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, TensorElementType};
use std::sync::Arc;

/// The stream a GPU session computes on, and its GPU. ONNX Runtime uses it until the session
/// is released: whoever holds the session drops this after it.
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

/// An output held on the device at a fixed address (CUDA graphs).
struct DeviceOutput {
    /// Held for its memory, which the binding writes at `address`.
    _tensor: DynTensor,
    address: u64,
    shape: Vec<usize>,
    dtype: DType,
}

/// Whoever holds the session drops this before it: the tensors go back to the session's
/// allocator, which lives as long as the session.
pub struct Input {
    binding: IoBinding,
    /// Held for its memory, which the binding reads at `address`.
    _tensor: DynTensor,
    address: u64,
    /// Empty: ONNX Runtime copies the outputs to the host itself.
    device_outputs: Vec<DeviceOutput>,
    output_names: Vec<String>,
    gpu: &'static Gpu,
    stream: Arc<CudaStream>,
}

impl Input {
    /// Allocates `input` (zeros) on the session's device and binds it as tensor `name`;
    /// binds `outputs` to the host, or with `graph` to device tensors of their own.
    pub fn bind(
        session: &Session,
        name: &str,
        outputs: &[String],
        input: &ModelInput,
        stream: &Stream,
        graph: bool,
    ) -> anyhow::Result<Input> {
        let device = stream.gpu.context.ordinal() as i32;
        let on_device = MemoryInfo::new(
            AllocationDevice::CUDA,
            device,
            AllocatorType::Device,
            MemoryType::Default,
        )?;
        let allocator = Allocator::new(session, on_device)?;
        let (tensor, address) = allocate(&allocator, input.dtype, &input.shape, stream)?;
        let mut binding = session.create_binding()?;
        binding.bind_input(name, &tensor)?;
        let mut device_outputs = Vec::new();
        for output in outputs {
            if !graph {
                binding.bind_output_to_device(output.as_str(), &MemoryInfo::default())?;
                continue;
            }
            let (shape, dtype) = static_shape(session, output)?;
            let (mut tensor, address) = allocate(&allocator, dtype, &shape, stream)?;
            binding.bind_output(output.as_str(), &mut tensor)?;
            device_outputs.push(DeviceOutput {
                _tensor: tensor,
                address,
                shape,
                dtype,
            });
        }
        Ok(Input {
            binding,
            _tensor: tensor,
            address,
            device_outputs,
            output_names: outputs.to_vec(),
            gpu: stream.gpu,
            stream: stream.stream.clone(),
        })
    }

    /// Lets `fill` write the input on the session's stream, runs the session on it, and
    /// returns the outputs on the host.
    pub fn run(&self, session: &mut Session, fill: &mut Fill<'_>) -> anyhow::Result<Vec<Tensor>> {
        fill(self.gpu, self.address, &self.stream)?;
        let outputs = session.run_binding(&self.binding)?;
        if self.device_outputs.is_empty() {
            return host_tensors(&outputs, &self.output_names);
        }
        drop(outputs);
        let stream = self.stream.cu_stream();
        let mut copies: Vec<Vec<u32>> = self
            .device_outputs
            .iter()
            .map(|o| vec![0u32; o.shape.iter().product()])
            .collect();
        for (output, host) in self.device_outputs.iter().zip(&mut copies) {
            // SAFETY: `address` holds `host.len()` 4-byte elements; the copy is queued after
            // the session's work on the same stream and waited for below.
            unsafe { cudarc::driver::result::memcpy_dtoh_async(host, output.address, stream) }?;
        }
        self.stream.synchronize()?;
        Ok(self
            .device_outputs
            .iter()
            .zip(copies)
            .map(|(output, bits)| Tensor {
                shape: output.shape.clone(),
                data: match output.dtype {
                    DType::F32 => TensorData::F32(bits.into_iter().map(f32::from_bits).collect()),
                    DType::I32 => TensorData::I32(bits.into_iter().map(|b| b as i32).collect()),
                },
            })
            .collect())
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

/// The fixed shape and type of output `name`: a CUDA graph needs both known at load.
fn static_shape(session: &Session, name: &str) -> anyhow::Result<(Vec<usize>, DType)> {
    let outlet = session
        .outputs()
        .iter()
        .find(|o| o.name() == name)
        .ok_or_else(|| anyhow::anyhow!("no output {name:?}"))?;
    let dims = outlet
        .dtype()
        .tensor_shape()
        .ok_or_else(|| anyhow::anyhow!("output {name:?} is not a tensor"))?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow::anyhow!("output {name:?} has a free axis ({dims:?}): no CUDA graph")
        })?;
    let dtype = match outlet.dtype().tensor_type() {
        Some(TensorElementType::Float32) => DType::F32,
        Some(TensorElementType::Int32) => DType::I32,
        other => anyhow::bail!("output {name:?} is {other:?}, not f32 or i32"),
    };
    Ok((shape, dtype))
}
