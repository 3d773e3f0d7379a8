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
pub(crate) struct Fit {
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
        stream.wait(&frame.uploaded)?;
        let (pixels, _read) = frame.pixels.device_ptr(stream);
        let fit = Fit {
            frame: pixels,
            out,
            ..self.fit_for(frame.width, frame.height)
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

impl InputSpec {
    /// The kernel's parameters for a frame of `width` x `height`, addresses left out.
    pub(crate) fn fit_for(&self, width: u32, height: u32) -> Fit {
        let [x1, y1, x2, y2] = self.region((width, height)).0;
        // The same spans the CPU path crops and pads by.
        let (x_first, x_count, x_from, x_len) = axis(Span::inside(x1, x2, width, self.width));
        let (y_first, y_count, y_from, y_len) = axis(Span::inside(y1, y2, height, self.height));
        Fit {
            frame: 0,
            out: 0,
            frame_w: width as i32,
            frame_h: height as i32,
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
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TensorData;
    use crate::media::{images, Frame};
    use std::path::Path;

    /// The kernel's input for `frame`, as the CPU twin's values (f32, or i32 as f32).
    fn run_kernel(spec: &InputSpec, frame: &Frame) -> Vec<f32> {
        let fit = spec.fit_for(frame.width, frame.height);
        let input = [crate::gpu::bytes_of(&fit), &frame.rgb].concat();
        crate::gpu::kernels_on_cpu(&["fit"], &input)
            .chunks_exact(4)
            .map(|b| {
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                match spec.dtype {
                    DType::F32 => f32::from_bits(bits),
                    DType::I32 => bits as i32 as f32,
                }
            })
            .collect()
    }

    #[test]
    fn the_kernel_computes_every_catalog_input_as_the_cpu_path_does() {
        let catalog = crate::vision::catalog::Catalog::open(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models"
        )))
        .unwrap();
        let dog = Frame::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/dog.jpg"
        )))
        .unwrap();
        let frames = [images::fit(&dog, 1280, 720), dog];
        let mut checked = Vec::new();
        for entry in &catalog.entries {
            let Ok(spec) = InputSpec::of(entry) else {
                continue; // I3D's clip
            };
            for frame in &frames {
                let cpu = spec.tensor(frame);
                let kernel = run_kernel(&spec, frame);
                assert_eq!(kernel.len(), cpu.shape.iter().product::<usize>());
                let plane = (spec.width * spec.height) as usize;
                let channel = |i: usize| match spec.layout {
                    Layout::Nchw => i / plane,
                    Layout::Nhwc => i % 3,
                };
                // In pixel levels: the CPU rounds to 8 bits after each of its two resize
                // passes (half a level each, the first carried through weights that sum to
                // one), the kernel keeps fractions until the end: at most one level apart.
                let levels = cpu
                    .as_f32()
                    .iter()
                    .zip(&kernel)
                    .enumerate()
                    .map(|(i, (c, k))| match cpu.data {
                        TensorData::F32(_) => (c - k).abs() * spec.std[channel(i)],
                        TensorData::I32(_) => (c - k).abs(),
                    })
                    .fold(0f32, f32::max);
                assert!(levels <= 1.001, "{}: {levels} levels apart", entry.name);
                checked.push((entry.name.clone(), levels));
            }
        }
        assert!(checked.len() >= 16, "{checked:?}");
    }
}
