//! The frame on the GPU (cargo feature `gpu`): the CUDA driver and NVRTC through cudarc,
//! both loaded at run time, so the same binary starts on a machine without them and runs the
//! CPU path there.
//!
//! A frame goes up once (`frame::DeviceCopy`, through pinned memory); each model's
//! pre-processing is then a kernel (`vision::preprocess::gpu`) that writes straight into the
//! model's input tensor, which ONNX Runtime owns on the device and reads in place
//! (`engine::onnxruntime`, IoBinding on the session's own stream). The full-frame overlays
//! are painted there too (`vision::layer::gpu`), and the finished frame comes down once for
//! the encoder. docs/gpu.md shows the flow.

pub mod frame;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use std::sync::{Arc, Mutex, OnceLock};

/// The kernels visiond compiles with NVRTC at first use (for the GPU it runs on).
const KERNELS: &str = include_str!("kernels.cu");

/// One GPU: its context (the device's primary one, which ONNX Runtime's CUDA provider uses
/// too), the compiled kernels, and the pinned memory frames go up through or are read from.
pub struct Gpu {
    pub context: Arc<CudaContext>,
    /// `fit_resize_pack`: a model's whole pre-processing (vision::preprocess::gpu).
    pub fit: CudaFunction,
    /// `paint_layers` and `box_blur`: the full-frame overlays (vision::layer::gpu).
    pub paint_layers: CudaFunction,
    pub box_blur: CudaFunction,
    /// `gather_clip`: an action clip's input from its ring of frames (vision::action).
    pub gather_clip: CudaFunction,
    /// `class_map`: a segmentation model's scores to its class map (vision::segmentation).
    pub class_map: CudaFunction,
    /// The overlays are painted on it, after every model's stream has read the frame.
    pub draw: Arc<CudaStream>,
    /// Frames are copied here first: the driver copies pinned memory to the device
    /// asynchronously and at full speed.
    staging: Mutex<Option<cudarc::driver::PinnedHostSlice<u8>>>,
    upload: Arc<CudaStream>,
    /// Whether frames are read in place from mapped host memory rather than copied: on an
    /// integrated GPU (a Jetson's shares the memory), or where `VISIOND_MAPPED_FRAMES=1`
    /// asks (to check that path on a discrete GPU, where it reads across the bus).
    pub mapped_frames: bool,
    /// Mapped frame buffers no frame holds.
    mapped: Mutex<Vec<frame::MappedBuffer>>,
}

/// A launch of one thread a pixel over `width` x `height`, in blocks of 16 x 16: the
/// shape of every visiond kernel.
pub fn launch_per_pixel(width: u32, height: u32) -> cudarc::driver::LaunchConfig {
    const BLOCK: u32 = 16;
    cudarc::driver::LaunchConfig {
        grid_dim: (width.div_ceil(BLOCK), height.div_ceil(BLOCK), 1),
        block_dim: (BLOCK, BLOCK, 1),
        shared_mem_bytes: 0,
    }
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
        let function = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| format!("kernel {name}: {e}"))
        };
        let draw = context
            .new_stream()
            .map_err(|e| format!("cannot create a CUDA stream: {e}"))?;
        let integrated = context
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_INTEGRATED)
            .map_err(|e| format!("CUDA device {device}: {e}"))?;
        let mapped_frames =
            integrated != 0 || std::env::var("VISIOND_MAPPED_FRAMES").is_ok_and(|v| v == "1");
        if mapped_frames {
            tracing::info!("GPU {device}: frames are read in place from mapped host memory");
        }
        Ok(Gpu {
            fit: function("fit_resize_pack")?,
            paint_layers: function("paint_layers")?,
            box_blur: function("box_blur")?,
            gather_clip: function("gather_clip")?,
            class_map: function("class_map")?,
            draw,
            context,
            staging: Mutex::new(None),
            upload,
            mapped_frames,
            mapped: Mutex::new(Vec::new()),
        })
    }

    fn lock_mapped(&self) -> std::sync::MutexGuard<'_, Vec<frame::MappedBuffer>> {
        self.mapped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `data` on the device, for good: small tables uploaded once, waited for here.
    pub fn upload_small<T: cudarc::driver::DeviceRepr>(
        &self,
        data: &[T],
    ) -> anyhow::Result<cudarc::driver::CudaSlice<T>> {
        let slice = self.upload.clone_htod(data)?;
        self.upload.synchronize()?;
        Ok(slice)
    }

    /// `len` zeros on the device, for good (a buffer a task keeps), ready when this returns.
    pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> anyhow::Result<cudarc::driver::CudaSlice<T>> {
        let slice = self.upload.alloc_zeros(len)?;
        self.upload.synchronize()?;
        Ok(slice)
    }

    /// A new stream for one model's session: its pre-processing and its inference queue on
    /// it in order, with no synchronisation between them.
    pub fn new_stream(&self) -> anyhow::Result<Arc<CudaStream>> {
        self.context
            .new_stream()
            .map_err(|e| anyhow::anyhow!("cannot create a CUDA stream: {e}"))
    }
}

/// kernels.cu run on the CPU (kernels_on_cpu.cpp, built once with the system's C++
/// compiler), so that tests without a GPU hold each kernel against its CPU twin.
#[cfg(test)]
pub fn kernels_on_cpu(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    static PROGRAM: OnceLock<std::path::PathBuf> = OnceLock::new();
    let program = PROGRAM.get_or_init(|| {
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/src/gpu/kernels_on_cpu.cpp");
        let dir = std::env::temp_dir().join(format!("visiond-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("kernels-on-cpu");
        let built = Command::new("c++")
            .args(["-O2", "-o"])
            .arg(&program)
            .arg(source)
            .status()
            .expect("a C++ compiler (c++)");
        assert!(built.success(), "cannot build {source}");
        program
    });
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread: the program answers while it reads.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "kernels-on-cpu {args:?}: {:?}",
        output.status
    );
    output.stdout
}

/// A value's bytes, as a kernel's parameters go to `kernels_on_cpu`.
#[cfg(test)]
pub fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: the kernels' parameter structs are plain numbers in the C layout.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// Floats from the bytes `kernels_on_cpu` writes.
#[cfg(test)]
pub fn f32s_from(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
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
