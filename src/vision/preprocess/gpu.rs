//! The GPU twin of `InputSpec::tensor`: the same fit, resize, normalisation and layout, as
//! one kernel (`fit_resize_pack` in src/gpu/kernels.cu) writing straight into the model's
//! input tensor on the device.

use super::{InputSpec, Layout, Span};
use crate::engine::DType;
use crate::gpu::{frame::OnGpu, Gpu};
use cudarc::driver::{CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

/// The kernel's parameters: the same layout as `struct Fit` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct Fit {
    frame: u64,
    out: u64,
    frame_w: i32,
    frame_h: i32,
    out_w: i32,
    out_h: i32,
    nchw: i32,
    is_i32: i32,
    x_first: i32,
    x_count: i32,
    y_first: i32,
    y_count: i32,
    x_from: f32,
    x_len: f32,
    y_from: f32,
    y_len: f32,
    pad: f32,
    mean: [f32; 3],
    std: [f32; 3],
}

// SAFETY: plain numbers, laid out as the kernel declares them.
unsafe impl DeviceRepr for Fit {}

/// Threads a block: 16 x 16 output pixels.
const BLOCK: u32 = 16;

impl InputSpec {
    /// Queues on `stream` the kernel that writes this input for `frame` into `out`, a
    /// device tensor of `self.shape()` and `self.dtype`.
    pub fn fill_on_gpu(
        &self,
        gpu: &Gpu,
        frame: &OnGpu,
        out: u64,
        stream: &CudaStream,
    ) -> anyhow::Result<()> {
        let [x1, y1, x2, y2] = self.region((frame.width, frame.height)).0;
        // The same spans the CPU path crops and pads by.
        let (x_first, x_count, x_from, x_len) = axis(Span::inside(x1, x2, frame.width, self.width));
        let (y_first, y_count, y_from, y_len) =
            axis(Span::inside(y1, y2, frame.height, self.height));
        stream.wait(&frame.uploaded)?;
        let (pixels, _read) = frame.pixels.device_ptr(stream);
        let fit = Fit {
            frame: pixels,
            out,
            frame_w: frame.width as i32,
            frame_h: frame.height as i32,
            out_w: self.width as i32,
            out_h: self.height as i32,
            nchw: i32::from(self.layout == Layout::Nchw),
            is_i32: i32::from(self.dtype == DType::I32),
            x_first,
            x_count,
            y_first,
            y_count,
            x_from,
            x_len,
            y_from,
            y_len,
            pad: f32::from(self.pad),
            mean: self.mean,
            std: self.std,
        };
        let config = LaunchConfig {
            grid_dim: (self.width.div_ceil(BLOCK), self.height.div_ceil(BLOCK), 1),
            block_dim: (BLOCK, BLOCK, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: `out` holds the whole input (the engine allocated it from this spec's
        // shape and type) and `pixels` the whole frame; the kernel writes only inside both.
        unsafe { stream.launch_builder(&gpu.fit).arg(&fit).launch(config) }?;
        Ok(())
    }
}

/// A span as the kernel takes it; none: every output pixel is padding.
fn axis(span: Option<Span>) -> (i32, i32, f32, f32) {
    span.map_or((0, 0, 0.0, 0.0), |s| {
        (
            s.first as i32,
            s.count as i32,
            s.from as f32,
            s.length as f32,
        )
    })
}
