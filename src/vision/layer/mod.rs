//! Full-frame layers: what segmentation (class colours) and background replacement (a person
//! mask over a backdrop) paint over every pixel, described as data that two painters read:
//! the CPU one here, and its GPU twin (`gpu.rs`, kernels.cu's `paint_layers`), which paints
//! a frame that is on the GPU already (a model took its input there) in one pass and brings
//! it down once. Tasks hand out their layer (`Task::layer`); `vision::draw` paints the layers
//! of all tasks before the drawings (boxes, labels, keypoints) that stay on the CPU.

pub mod blur;
#[cfg(feature = "gpu")]
mod gpu;

use super::mask::{self, Filter, Grid};
use super::scores::ramp;
use crate::media::Frame;

/// Probabilities between these blend person and background; above, the person's pixels
/// stay as they are, below they are replaced.
pub const EDGE: (f32, f32) = (0.3, 0.7);

pub enum Layer<'a> {
    /// Where `mask` (a person probability a cell) says background, `backdrop` shows.
    Backdrop {
        mask: &'a Grid<1>,
        backdrop: Backdrop<'a>,
    },
    /// Class colours over the frame: `palette[id]` is a class's colour premultiplied by its
    /// opacity, and the opacity; `filter` stretches the map over the frame.
    Tint {
        map: ClassIds<'a>,
        palette: Vec<[f32; 4]>,
        filter: Filter,
    },
}

/// A class id a cell, row after row.
pub struct ClassIds<'a> {
    pub width: usize,
    pub height: usize,
    pub ids: &'a [u8],
}

/// What shows where the person is not.
pub enum Backdrop<'a> {
    Flat([u8; 3]),
    /// The frame itself, blurred (`blur`).
    Blurred,
    /// A picture of the frame's size.
    Picture(&'a Frame),
}

/// Paints `layers` over `frame` in order: on the GPU if the frame is there already (and it
/// works), else on the CPU.
pub fn paint(frame: &mut Frame, layers: &[Layer]) {
    if layers.is_empty() {
        return;
    }
    #[cfg(feature = "gpu")]
    if let Some(on_gpu) = frame.gpu_copy() {
        match gpu::paint(&on_gpu, layers, &mut frame.rgb) {
            Ok(()) => return,
            Err(e) => warn_once(&e),
        }
    }
    for layer in layers {
        layer.paint(frame);
    }
}

/// Paints `layers` over `frame`'s GPU copy into `rgb` (the frame's size).
#[cfg(feature = "gpu")]
pub fn paint_on_gpu(frame: &Frame, layers: &[Layer], rgb: &mut [u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let on_gpu = frame.gpu_copy().context("the frame is not on the GPU")?;
    gpu::paint(&on_gpu, layers, rgb)
}

/// How far two paintings of a frame are apart: the largest difference in levels, and the
/// PSNR in dB (infinite when they are equal).
#[cfg(any(test, feature = "gpu"))]
pub fn difference(a: &[u8], b: &[u8]) -> (u8, f64) {
    let largest = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let squares: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let mse = squares / a.len().max(1) as f64;
    (largest, 10.0 * (255.0f64.powi(2) / mse).log10())
}

/// The first failure to paint on the GPU, logged once: the CPU paints meanwhile.
#[cfg(feature = "gpu")]
fn warn_once(error: &anyhow::Error) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| tracing::warn!("overlays painted on the CPU: {error:#}"));
}

impl Layer<'_> {
    /// Paints this layer over `frame` on the CPU.
    pub fn paint(&self, frame: &mut Frame) {
        match self {
            Layer::Backdrop { mask, backdrop } => {
                let blurred;
                let picture = match backdrop {
                    Backdrop::Flat(color) => return composite(frame, mask, |_, _| *color),
                    Backdrop::Blurred => {
                        blurred = blur::blurred_frame(frame);
                        &blurred
                    }
                    Backdrop::Picture(picture) if same_size(picture, frame) => *picture,
                    Backdrop::Picture(_) => return composite(frame, mask, |_, _| [0; 3]),
                };
                composite(frame, mask, |x, y| picture.pixel(x as u32, y as u32));
            }
            Layer::Tint {
                map,
                palette,
                filter,
            } => {
                let grid = Grid {
                    width: map.width,
                    height: map.height,
                    cells: map.ids.iter().map(|&id| palette[usize::from(id)]).collect(),
                };
                grid.paint(frame, *filter, |_, _, pixel, [r, g, b, a]| {
                    if a > 0.0 {
                        for (p, c) in pixel.iter_mut().zip([r, g, b]) {
                            *p = mask::to_byte(f32::from(*p) * (1.0 - a) + c);
                        }
                    }
                });
            }
        }
    }
}

fn same_size(a: &Frame, b: &Frame) -> bool {
    (a.width, a.height) == (b.width, b.height)
}

/// Mixes the backdrop (`replacement` at a pixel) into every pixel by how much it is
/// background.
fn composite(
    frame: &mut Frame,
    mask: &Grid<1>,
    replacement: impl Fn(usize, usize) -> [u8; 3] + Sync,
) {
    mask.paint(frame, Filter::Linear, |x, y, pixel, [probability]| {
        let person = ramp(probability, EDGE.0, EDGE.1);
        if person >= 1.0 {
            return;
        }
        let replacement = replacement(x, y);
        // Most of a frame is plain background: no blending there.
        if person <= 0.0 {
            pixel.copy_from_slice(&replacement);
            return;
        }
        for (p, r) in pixel.iter_mut().zip(replacement) {
            *p = mask::to_byte(f32::from(*p) * person + f32::from(r) * (1.0 - person));
        }
    });
}
