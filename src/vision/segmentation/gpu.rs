//! The class map on the GPU: where the model's input is made there, its scores stay there
//! too, and one kernel (`class_map` in src/gpu/kernels.cu) upsamples every class and takes
//! the best at each map pixel, as `ClassMap::of` does on the host. Only the map, a byte a
//! pixel, comes down.

use super::{grid_of, map_taps, ClassMap, Segmentation};
use crate::engine::DeviceTensor;
use crate::gpu::{launch_per_pixel, Gpu};
use crate::media::Frame;
use crate::vision::mask::{Alignment, Filter, Tap};
use crate::vision::preprocess::{InputSpec, Layout};
use anyhow::Context as _;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, PushKernelArg};
use std::sync::Arc;

/// The kernel's parameters: the same layout as `struct ClassScores` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct ClassScores {
    scores: u64,
    ids: u64,
    columns: u64,
    rows: u64,
    width: i32,
    height: i32,
    grid_w: i32,
    grid_h: i32,
    classes: i32,
    nchw: i32,
}

// SAFETY: plain numbers, laid out as the kernel declares them.
unsafe impl DeviceRepr for ClassScores {}

/// A `Tap` as the kernels read one (`struct Tap` in kernels.cu).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct KernelTap {
    low: i32,
    high: i32,
    weight: f32,
}

// SAFETY: as above.
unsafe impl DeviceRepr for KernelTap {}

pub(super) fn kernel_taps(taps: &[Tap]) -> Vec<KernelTap> {
    taps.iter()
        .map(|t| KernelTap {
            low: t.low as i32,
            high: t.high as i32,
            weight: t.weight,
        })
        .collect()
}

/// The class-map kernel's parameters, taps and map buffer on the device, made for one
/// scores shape, frame size and filter and kept while those stay the same (a camera's frames
/// do): a frame then uploads and allocates nothing for its map.
pub(super) struct MapBuffers {
    made_for: (Vec<usize>, (u32, u32), Filter),
    params: ClassScores,
    columns: CudaSlice<KernelTap>,
    rows: CudaSlice<KernelTap>,
    ids: CudaSlice<u8>,
}

impl MapBuffers {
    fn new(
        stream: &Arc<CudaStream>,
        made_for: (Vec<usize>, (u32, u32), Filter),
        (input, alignment): (&InputSpec, Alignment),
    ) -> anyhow::Result<MapBuffers> {
        let (shape, size, filter) = &made_for;
        let (params, columns, rows) = plan(shape, (input, alignment), *size, *filter)?;
        // SAFETY: every byte is written by the kernel before the copy down reads it.
        let ids = unsafe { stream.alloc::<u8>((params.width * params.height) as usize) }?;
        Ok(MapBuffers {
            params,
            columns: stream.clone_htod(&kernel_taps(&columns))?,
            rows: stream.clone_htod(&kernel_taps(&rows))?,
            ids,
            made_for,
        })
    }
}

impl Segmentation {
    /// The class map of `frame`, the model's input and scores on the GPU; `None` where the
    /// engine takes no input there.
    pub(super) fn class_map_on_gpu(
        &mut self,
        frame: &Frame,
        filter: Filter,
    ) -> Option<anyhow::Result<ClassMap>> {
        let (input, alignment) = (&self.input, self.alignment);
        let buffers = &mut self.map_on_gpu;
        let mut map = None;
        let ran = self.engine.run_on_device(
            &mut |gpu, address, stream| input.fill_from(gpu, frame, address, stream),
            &mut |gpu, outputs, stream| {
                let scores = outputs.first().context("the model gave no output")?;
                let made_for = (scores.shape.clone(), (frame.width, frame.height), filter);
                if buffers.as_ref().is_none_or(|b| b.made_for != made_for) {
                    *buffers = Some(MapBuffers::new(stream, made_for, (input, alignment))?);
                }
                let buffers = buffers.as_mut().expect("made above");
                map = Some(class_map(gpu, stream, scores, buffers)?);
                Ok(())
            },
        )?;
        Some(ran.and_then(|()| map.context("no class map was made")))
    }
}

/// The kernel's parameters (addresses left 0) and the map's column and row taps, for scores
/// of `shape` upsampled over the part of `input` that shows a frame of `size`.
pub(super) fn plan(
    shape: &[usize],
    (input, alignment): (&InputSpec, Alignment),
    size: (u32, u32),
    filter: Filter,
) -> anyhow::Result<(ClassScores, Vec<Tap>, Vec<Tap>)> {
    let (classes, grid_h, grid_w) = grid_of(shape, input.layout)?;
    let (columns, rows) = map_taps((grid_w, grid_h), (input, alignment), size, filter);
    let params = ClassScores {
        width: columns.len() as i32,
        height: rows.len() as i32,
        grid_w: grid_w as i32,
        grid_h: grid_h as i32,
        classes: classes as i32,
        nchw: i32::from(input.layout == Layout::Nchw),
        ..ClassScores::default()
    };
    Ok((params, columns, rows))
}

/// Runs the kernel over `scores` on `stream` into `buffers`' map and brings the map down
/// (which waits for it).
fn class_map(
    gpu: &Gpu,
    stream: &Arc<CudaStream>,
    scores: &DeviceTensor,
    buffers: &mut MapBuffers,
) -> anyhow::Result<ClassMap> {
    let (width, height) = (buffers.params.width as u32, buffers.params.height as u32);
    {
        let (columns, _read) = buffers.columns.device_ptr(stream);
        let (rows, _read) = buffers.rows.device_ptr(stream);
        let (ids, _written) = buffers.ids.device_ptr_mut(stream);
        let params = ClassScores {
            scores: scores.address,
            ids,
            columns,
            rows,
            ..buffers.params
        };
        // SAFETY: `scores` holds the grid the shape says (checked by `grid_of`), the taps
        // lie inside it, and the kernel writes only the map's `width * height` bytes.
        unsafe {
            stream
                .launch_builder(&gpu.class_map)
                .arg(&params)
                .launch(launch_per_pixel(width, height))
        }?;
    }
    Ok(ClassMap {
        width: width as usize,
        height: height as usize,
        ids: stream.clone_dtoh(&buffers.ids)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ClassMap, Scores};
    use super::*;
    use crate::engine::Tensor;
    use crate::gpu::{bytes_of, kernels_on_cpu};
    use crate::vision::testing::Env;

    /// Scores in `low..high`, the same every run.
    fn scores(shape: Vec<usize>, (low, high): (f32, f32)) -> Tensor {
        let mut state = 12345u32;
        let data = (0..shape.iter().product::<usize>())
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                low + (high - low) * (state >> 8) as f32 / (1 << 24) as f32
            })
            .collect();
        Tensor::f32(shape, data)
    }

    /// The kernel's class map is the host's, pixel for pixel: DeepLab's NHWC logits at its
    /// padded fit with corner alignment, the selfie model's one probability, and an NCHW
    /// grid of a few classes; both filters, two frame sizes.
    #[test]
    fn the_kernel_makes_the_hosts_class_map() {
        let env = Env::new();
        let of = |name| InputSpec::of(env.catalog.get(name).unwrap()).unwrap();
        let nchw = InputSpec::stretched((48, 40), Layout::Nchw, [0.0; 3], [1.0; 3]);
        let cases = [
            (
                of("deeplabv3-mnv2-pascal"),
                vec![1, 65, 65, 21],
                (-4.0, 4.0),
                Alignment::Corners,
            ),
            (
                of("selfie-segmentation"),
                vec![1, 256, 256, 1],
                (0.0, 1.0),
                Alignment::Centres,
            ),
            (nchw, vec![1, 3, 10, 12], (-1.0, 1.0), Alignment::Centres),
        ];
        for (input, shape, range, alignment) in cases {
            let output = scores(shape.clone(), range);
            let grid = Scores::of(&output, input.layout).unwrap();
            for filter in [Filter::Linear, Filter::Point] {
                for size in [(1280, 720), (640, 424)] {
                    let host = ClassMap::of(&grid, (&input, alignment), size, filter);
                    let (params, columns, rows) =
                        plan(&shape, (&input, alignment), size, filter).unwrap();
                    let mut stdin = bytes_of(&params).to_vec();
                    stdin.extend(output.as_f32().iter().flat_map(|v| v.to_ne_bytes()));
                    for tap in kernel_taps(&columns).iter().chain(&kernel_taps(&rows)) {
                        stdin.extend_from_slice(bytes_of(tap));
                    }
                    let ids = kernels_on_cpu(&["classes"], &stdin);
                    assert_eq!(
                        (columns.len(), rows.len()),
                        (host.width, host.height),
                        "{shape:?} {size:?}"
                    );
                    assert!(
                        ids == host.ids,
                        "{shape:?} {filter:?} {size:?}: maps differ"
                    );
                }
            }
        }
    }
}
