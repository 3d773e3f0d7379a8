//! The frame on the GPU (cargo feature `gpu`): the CUDA driver and NVRTC through cudarc,
//! both loaded at run time, so the same binary starts on a machine without them and runs the
//! CPU path there.
//!
//! A frame goes up once (`frame::Copy`, through pinned memory); each model's
//! pre-processing is then a kernel (`vision::preprocess::gpu`) that writes straight into the
//! model's input tensor, which ONNX Runtime owns on the device and reads in place
//! (`engine::onnxruntime`, IoBinding on the session's own stream). docs/gpu.md shows the flow.

pub mod frame;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use std::sync::{Arc, Mutex, OnceLock};

/// The kernels visiond compiles with NVRTC at first use (for the GPU it runs on).
const KERNELS: &str = include_str!("kernels.cu");

/// One GPU: its context (the device's primary one, which ONNX Runtime's CUDA provider uses
/// too), the compiled kernels, and the pinned buffer frames go up through.
pub struct Gpu {
    pub context: Arc<CudaContext>,
    /// `fit_resize_pack`: a model's whole pre-processing (vision::preprocess::gpu).
    pub fit: CudaFunction,
    /// Frames are copied here first: the driver copies pinned memory to the device
    /// asynchronously and at full speed.
    staging: Mutex<Option<cudarc::driver::PinnedHostSlice<u8>>>,
    upload: Arc<CudaStream>,
}

/// The GPU `device`, set up once per process; `Err` says why there is none (logged once by
/// the caller), and the frame then stays on the CPU.
pub fn get(device: usize) -> Result<&'static Gpu, &'static str> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::open(device);
        match &gpu {
            Ok(_) => tracing::info!("GPU {device}: frames are pre-processed on it"),
            Err(e) => tracing::info!("no GPU pre-processing: {e}"),
        }
        gpu
    })
    .as_ref()
    .map_err(String::as_str)
}

impl Gpu {
    fn open(device: usize) -> Result<Gpu, String> {
        // SAFETY: only tries to dlopen the driver library; cudarc panics on any other call
        // when it is missing.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda.so) on this machine".into());
        }
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("no NVRTC library (libnvrtc.so) to compile visiond's kernels".into());
        }
        let context = CudaContext::new(device).map_err(|e| format!("CUDA device {device}: {e}"))?;
        let options = cudarc::nvrtc::CompileOptions {
            // IEEE division and no fused multiply-add: results as close to the CPU's as the
            // arithmetic allows (the kernels are memory-bound; this costs nothing measurable).
            prec_div: Some(true),
            fmad: Some(false),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(KERNELS, options)
            .map_err(|e| format!("NVRTC cannot compile visiond's kernels: {e}"))?;
        let module = context
            .load_module(ptx)
            .map_err(|e| format!("cannot load visiond's kernels: {e}"))?;
        let upload = context
            .new_stream()
            .map_err(|e| format!("cannot create a CUDA stream: {e}"))?;
        let fit = module
            .load_function("fit_resize_pack")
            .map_err(|e| format!("kernel fit_resize_pack: {e}"))?;
        Ok(Gpu {
            context,
            fit,
            staging: Mutex::new(None),
            upload,
        })
    }

    /// A new stream for one model's session: its pre-processing and its inference queue on
    /// it in order, with no synchronisation between them.
    pub fn new_stream(&self) -> anyhow::Result<Arc<CudaStream>> {
        self.context
            .new_stream()
            .map_err(|e| anyhow::anyhow!("cannot create a CUDA stream: {e}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_machine_without_a_driver_has_no_gpu_and_says_why_and_one_with_compiles_the_kernels() {
        // SAFETY: only tries to dlopen the driver library.
        let driver = unsafe { cudarc::driver::sys::is_culib_present() };
        match super::get(0) {
            // With a driver and NVRTC: the context is up and the kernels compiled.
            Ok(gpu) => assert!(driver && gpu.context.ordinal() == 0),
            Err(why) if !driver => assert!(why.contains("no CUDA driver"), "{why}"),
            // A driver without a device or NVRTC still must not panic, and must say so.
            Err(why) => assert!(!why.is_empty()),
        }
    }
}
