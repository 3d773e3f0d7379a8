//! The GPU twin of `InputSpec::tensor`: the same fit, resize, normalisation and layout, as
//! one kernel (`fit_resize_pack` in src/gpu/kernels.cu) writing straight into the model's
//! input tensor on the device. The resize's weights are fast_image_resize's own, worked out
//! on the host (`taps`) and kept on the device per input and frame size, so the kernel
//! computes the CPU path's bytes.

mod taps;

use super::{InputSpec, Layout, Span};
use crate::engine::DType;
use crate::gpu::{frame::OnGpu, Gpu};
use crate::media::Frame;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, PushKernelArg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use taps::AxisTaps;

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
    pad: f32,
    mean: [f32; 3],
    std: [f32; 3],
    x_starts: u64,
    x_sizes: u64,
    x_weights: u64,
    y_starts: u64,
    y_sizes: u64,
    y_weights: u64,
    x_window: i32,
    y_window: i32,
    x_precision: i32,
    y_precision: i32,
}

// SAFETY: plain numbers, laid out as the kernel declares them.
unsafe impl DeviceRepr for Fit {}

impl InputSpec {
    /// `fill_on_gpu` for a frame on the host, uploaded at the first call for any model.
    pub fn fill_from(
        &self,
        gpu: &'static Gpu,
        frame: &Frame,
        out: u64,
        stream: &CudaStream,
    ) -> anyhow::Result<()> {
        let on_gpu = frame.on_gpu(gpu)?;
        self.fill_on_gpu(gpu, &on_gpu, out, stream)
    }

    /// Queues on `stream` the kernel that writes this input for `frame` into `out`, a
    /// device tensor of `self.shape()` and `self.dtype`.
    pub fn fill_on_gpu(
        &self,
        gpu: &Gpu,
        frame: &OnGpu,
        out: u64,
        stream: &CudaStream,
    ) -> anyhow::Result<()> {
        let (fit, axes) = self.fit_for(frame.width, frame.height);
        let tables = tables_on(gpu, &axes)?;
        let (pixels, _read) = frame.read_on(stream)?;
        let fit = tables.point(
            Fit {
                frame: pixels,
                out,
                ..fit
            },
            stream,
        );
        let config = crate::gpu::launch_per_pixel(self.width, self.height);
        // SAFETY: `out` holds the whole input (the engine allocated it from this spec's
        // shape and type), `pixels` the whole frame and the tables every output pixel's
        // taps, which lie inside the frame; the kernel writes only inside `out`.
        unsafe { stream.launch_builder(&gpu.fit).arg(&fit).launch(config) }?;
        Ok(())
    }
}

impl InputSpec {
    /// The kernel's parameters for a frame of `width` x `height` (addresses and the taps'
    /// shape left out), and what each axis's taps are made of.
    pub(crate) fn fit_for(&self, width: u32, height: u32) -> (Fit, [Axis; 2]) {
        let [x1, y1, x2, y2] = self.region((width, height)).0;
        // The same spans the CPU path crops and pads by.
        let x = Axis(width, Span::inside(x1, x2, width, self.width));
        let y = Axis(height, Span::inside(y1, y2, height, self.height));
        let ((x_first, x_count), (y_first, y_count)) = (x.outputs(), y.outputs());
        let fit = Fit {
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
            pad: f32::from(self.pad),
            mean: self.mean,
            std: self.std,
            x_starts: 0,
            x_sizes: 0,
            x_weights: 0,
            y_starts: 0,
            y_sizes: 0,
            y_weights: 0,
            x_window: 0,
            y_window: 0,
            x_precision: 0,
            y_precision: 0,
        };
        (fit, [x, y])
    }
}

/// One axis of the fit: the frame's size along it and the span of output pixels whose
/// source lies inside the frame (none: every output pixel is padding).
pub(crate) struct Axis(u32, Option<Span>);

impl Axis {
    /// The first output pixel inside the frame and how many, as the kernel takes them.
    fn outputs(&self) -> (i32, i32) {
        self.1
            .as_ref()
            .map_or((0, 0), |s| (s.first as i32, s.count as i32))
    }

    /// The resize's taps (one unused set when no output pixel is inside the frame).
    fn taps(&self) -> AxisTaps {
        match &self.1 {
            Some(s) => AxisTaps::new(self.0, s.from, s.length, s.count),
            None => AxisTaps::new(self.0, 0.0, f64::from(self.0), 1),
        }
    }

    /// What the taps depend on, exactly: equal keys, equal taps.
    fn key(&self) -> [u64; 5] {
        let s = self.1.as_ref();
        [
            u64::from(self.0),
            s.map_or(u64::MAX, |s| u64::from(s.first)),
            s.map_or(0, |s| u64::from(s.count)),
            s.map_or(0, |s| s.from.to_bits()),
            s.map_or(0, |s| s.length.to_bits()),
        ]
    }
}

/// Both axes' taps on the device.
struct Tables {
    starts: [CudaSlice<i32>; 2],
    sizes: [CudaSlice<i32>; 2],
    weights: [CudaSlice<i16>; 2],
    windows: [i32; 2],
    precisions: [i32; 2],
}

impl Tables {
    /// `fit` pointing at these tables.
    fn point(&self, fit: Fit, stream: &CudaStream) -> Fit {
        let address = |slice: &CudaSlice<i32>| slice.device_ptr(stream).0;
        let weights = |slice: &CudaSlice<i16>| slice.device_ptr(stream).0;
        Fit {
            x_starts: address(&self.starts[0]),
            x_sizes: address(&self.sizes[0]),
            x_weights: weights(&self.weights[0]),
            y_starts: address(&self.starts[1]),
            y_sizes: address(&self.sizes[1]),
            y_weights: weights(&self.weights[1]),
            x_window: self.windows[0],
            y_window: self.windows[1],
            x_precision: self.precisions[0],
            y_precision: self.precisions[1],
            ..fit
        }
    }
}

/// The taps of `axes` on the device, worked out and uploaded at the first frame of each
/// size a model sees, then kept (a few kilobytes each; the cache starts over past `CACHED`
/// sets).
fn tables_on(gpu: &Gpu, axes: &[Axis; 2]) -> anyhow::Result<Arc<Tables>> {
    const CACHED: usize = 64;
    type Cache = Mutex<HashMap<[[u64; 5]; 2], Arc<Tables>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = [axes[0].key(), axes[1].key()];
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(tables) = cache.get(&key) {
        return Ok(tables.clone());
    }
    if cache.len() >= CACHED {
        cache.clear();
    }
    let taps = [axes[0].taps(), axes[1].taps()];
    let tables = Arc::new(Tables {
        starts: [
            gpu.upload_small(&taps[0].starts)?,
            gpu.upload_small(&taps[1].starts)?,
        ],
        sizes: [
            gpu.upload_small(&taps[0].sizes)?,
            gpu.upload_small(&taps[1].sizes)?,
        ],
        weights: [
            gpu.upload_small(&taps[0].weights)?,
            gpu.upload_small(&taps[1].weights)?,
        ],
        windows: taps.each_ref().map(|t| t.window as i32),
        precisions: taps.each_ref().map(|t| t.precision),
    });
    cache.insert(key, tables.clone());
    Ok(tables)
}

/// What `kernels_on_cpu fit` reads for `spec` and `frame`: the parameters, the frame, then
/// each axis's starts, sizes and weights.
#[cfg(test)]
pub(crate) fn kernel_input(spec: &InputSpec, frame: &crate::media::Frame) -> Vec<u8> {
    let (fit, axes) = spec.fit_for(frame.width, frame.height);
    let taps = axes.each_ref().map(Axis::taps);
    let fit = Fit {
        x_window: taps[0].window as i32,
        y_window: taps[1].window as i32,
        x_precision: taps[0].precision,
        y_precision: taps[1].precision,
        ..fit
    };
    let mut input = [crate::gpu::bytes_of(&fit), &frame.rgb].concat();
    for t in &taps {
        input.extend(
            t.starts
                .iter()
                .chain(&t.sizes)
                .flat_map(|v| v.to_ne_bytes()),
        );
        input.extend(t.weights.iter().flat_map(|w| w.to_ne_bytes()));
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{images, Frame};
    use std::path::Path;

    /// The kernel's input for `frame`, as the CPU twin's values (f32, or i32 as f32).
    fn run_kernel(spec: &InputSpec, frame: &Frame) -> Vec<f32> {
        crate::gpu::kernels_on_cpu(&["fit"], &kernel_input(spec, frame))
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
                // The same fixed-point resize and the same normalisation: the same values,
                // bit for bit.
                let cpu = cpu.as_f32();
                let differing = cpu.iter().zip(&kernel).filter(|(c, k)| c != k).count();
                assert_eq!(differing, 0, "{}: {differing} values differ", entry.name);
                checked.push(entry.name.clone());
            }
        }
        assert!(checked.len() >= 16, "{checked:?}");
    }
}
