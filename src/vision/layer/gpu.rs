//! The GPU twin of `Layer::paint`: every layer painted over a frame that is on the GPU
//! already, in one pass (kernels.cu's `paint_layers`), into a new buffer that is then
//! brought down into the frame's pixels for the encoder. The blur backdrop is made there too:
//! the frame shrunk by the pre-processing kernel, then blurred by `box_blur`.

use super::{blur, Backdrop, Layer, EDGE};
use crate::gpu::frame::OnGpu;
use crate::gpu::launch_per_pixel;
use crate::vision::preprocess::{InputSpec, Layout};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, PushKernelArg};
use std::sync::Arc;

/// The kernel's parameters: the same layout as `struct Layers` in kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Layers {
    frame: u64,
    out: u64,
    width: i32,
    height: i32,
    backdrop: i32,
    mask: u64,
    mask_w: i32,
    mask_h: i32,
    edge_low: f32,
    edge_high: f32,
    color: [i32; 3],
    picture: u64,
    blurred: u64,
    blurred_w: i32,
    blurred_h: i32,
    tint: i32,
    ids: u64,
    ids_w: i32,
    ids_h: i32,
    tint_point: i32,
    palette: u64,
}

// SAFETY: plain numbers, laid out as the kernel declares them.
unsafe impl DeviceRepr for Layers {}

/// Paints `layers` over the frame on the GPU and writes the result into `rgb`, the frame's
/// host pixels.
pub fn paint(frame: &OnGpu, layers: &[Layer], rgb: &mut [u8]) -> anyhow::Result<()> {
    let gpu = frame.gpu;
    let stream = &gpu.draw;
    // What the kernel reads, kept alive until it has run (the stream is synchronised below).
    let mut keep = Inputs::default();
    let mut params = Layers {
        width: frame.width as i32,
        height: frame.height as i32,
        ..Layers::default()
    };
    for layer in layers {
        describe(layer, frame, stream, &mut params, &mut keep)?;
    }
    // SAFETY: every byte is written by the kernel before the copy down reads it.
    let out = unsafe { stream.alloc::<u8>(rgb.len()) }?;
    {
        let (pixels, _read) = frame.read_on(stream)?;
        let (out_ptr, _written) = out.device_ptr(stream);
        params.frame = pixels;
        params.out = out_ptr;
        // SAFETY: the addresses are of buffers sized as `params` says, alive until the
        // stream is synchronised.
        unsafe {
            stream
                .launch_builder(&gpu.paint_layers)
                .arg(&params)
                .launch(launch_per_pixel(frame.width, frame.height))
        }?;
    }
    stream.memcpy_dtoh(&out, rgb)?;
    stream.synchronize()?;
    drop(keep);
    Ok(())
}

/// Device buffers the kernel reads.
#[derive(Default)]
struct Inputs {
    floats: Vec<CudaSlice<f32>>,
    bytes: Vec<CudaSlice<u8>>,
    frames: Vec<Arc<OnGpu>>,
}

/// Fills `params` for `layer`, uploading what it needs into `keep`.
fn describe(
    layer: &Layer,
    frame: &OnGpu,
    stream: &Arc<CudaStream>,
    params: &mut Layers,
    keep: &mut Inputs,
) -> anyhow::Result<()> {
    match layer {
        Layer::Backdrop { mask, backdrop } => {
            let cells: Vec<f32> = mask.cells.iter().map(|[p]| *p).collect();
            params.mask = kept(&mut keep.floats, stream.clone_htod(&cells)?, stream);
            (params.mask_w, params.mask_h) = (mask.width as i32, mask.height as i32);
            (params.edge_low, params.edge_high) = EDGE;
            params.backdrop = match backdrop {
                Backdrop::Flat(color) => {
                    params.color = color.map(i32::from);
                    1
                }
                Backdrop::Picture(picture) => {
                    anyhow::ensure!(
                        (picture.width, picture.height) == (frame.width, frame.height),
                        "the backdrop picture is not the frame's size"
                    );
                    // Uploaded once: the picture keeps its copy until it changes. Its read
                    // is recorded before the kernel is queued, which is enough: nothing writes
                    // the picture's copy again, and `paint` waits for the kernel before the
                    // copy can drop.
                    let on_gpu = picture.on_gpu(frame.gpu)?;
                    params.picture = on_gpu.read_on(stream)?.0;
                    keep.frames.push(on_gpu);
                    2
                }
                Backdrop::Blurred => {
                    let (width, height) = blur::small_size(frame.width, frame.height);
                    let blurred = blurred_on_gpu(frame, stream, width, height)?;
                    params.blurred = kept(&mut keep.floats, blurred, stream);
                    (params.blurred_w, params.blurred_h) = (width as i32, height as i32);
                    3
                }
            };
        }
        Layer::Tint {
            map,
            palette,
            filter,
        } => {
            params.ids = kept(&mut keep.bytes, stream.clone_htod(map.ids)?, stream);
            (params.ids_w, params.ids_h) = (map.width as i32, map.height as i32);
            let palette: Vec<f32> = palette.iter().flatten().copied().collect();
            params.palette = kept(&mut keep.floats, stream.clone_htod(&palette)?, stream);
            params.tint_point = i32::from(*filter == crate::vision::mask::Filter::Point);
            params.tint = 1;
        }
    }
    Ok(())
}

/// Keeps `slice` in `list` until the kernel has run, and gives its address.
fn kept<T>(list: &mut Vec<CudaSlice<T>>, slice: CudaSlice<T>, stream: &CudaStream) -> u64 {
    let address = slice.device_ptr(stream).0;
    list.push(slice);
    address
}

/// The blur backdrop's small picture (f32 RGB cells, `width` x `height`): the frame shrunk
/// with the pre-processing kernel, then box-blurred along rows and columns in turn.
fn blurred_on_gpu(
    frame: &OnGpu,
    stream: &Arc<CudaStream>,
    width: u32,
    height: u32,
) -> anyhow::Result<CudaSlice<f32>> {
    let gpu = frame.gpu;
    let cells = (width * height * 3) as usize;
    // SAFETY: both are written in full by the kernels before they are read.
    let mut a = unsafe { stream.alloc::<f32>(cells) }?;
    let mut b = unsafe { stream.alloc::<f32>(cells) }?;
    // The CPU resizes the frame to the small size: the same filter, unnormalised.
    let shrink = InputSpec::stretched((width, height), Layout::Nhwc, [0.0; 3], [1.0; 3]);
    {
        let (out, _written) = a.device_ptr(stream);
        shrink.fill_on_gpu(gpu, frame, out, stream)?;
    }
    let (w, h, radius) = (width as i32, height as i32, blur::RADIUS as i32);
    for _ in 0..blur::PASSES {
        for along_columns in [0i32, 1] {
            // SAFETY: both buffers hold `cells` floats; the kernel reads one, writes the other.
            unsafe {
                stream
                    .launch_builder(&gpu.box_blur)
                    .arg(&a)
                    .arg(&mut b)
                    .arg(&w)
                    .arg(&h)
                    .arg(&radius)
                    .arg(&along_columns)
                    .launch(launch_per_pixel(width, height))
            }?;
            std::mem::swap(&mut a, &mut b);
        }
    }
    Ok(a)
}

// The twin checks run the kernels' own source on the CPU (src/gpu/kernels_on_cpu.cpp).
#[cfg(test)]
mod tests;
