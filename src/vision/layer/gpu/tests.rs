//! The GPU painter against the CPU one, on the CPU: kernels.cu's `paint_layers`,
//! `fit_resize_pack` and `box_blur` run through `gpu::kernels_on_cpu`, fed as `paint` feeds
//! them on a GPU, and compared with `Layer::paint` on the person picture.

use super::*;
use crate::gpu::{bytes_of, kernels_on_cpu};
use crate::media::{images, Frame};
use crate::vision::layer::ClassIds;
use crate::vision::mask::{Filter, Grid};
use std::path::Path;

fn person() -> Frame {
    Frame::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/person.jpg"
    )))
    .unwrap()
}

/// A soft blob of person probability in the middle of a 64 x 48 grid: every blend between
/// person and backdrop occurs.
fn blob() -> Grid<1> {
    let (width, height) = (64, 48);
    let cells = (0..width * height)
        .map(|i| {
            let (x, y) = (
                (i % width) as f32 / width as f32,
                (i / width) as f32 / height as f32,
            );
            let d = ((x - 0.5).powi(2) + (y - 0.5).powi(2)).sqrt();
            [(1.2 - 3.0 * d).clamp(0.0, 1.0)]
        })
        .collect();
    Grid {
        width,
        height,
        cells,
    }
}

/// Three classes in bands over a 33 x 21 map: clear, half opaque, opaque.
fn bands() -> (Vec<u8>, Vec<[f32; 4]>) {
    let ids = (0..33 * 21).map(|i| ((i % 33) / 11) as u8).collect();
    let palette = vec![
        [0.0, 0.0, 0.0, 0.0],
        [100.0, 20.0, 60.0, 0.5],
        [10.0, 240.0, 30.0, 1.0],
    ];
    (ids, palette)
}

/// `layers` painted by the kernels, with `blurred` the blur backdrop's cells if it has one.
fn painted_by_kernel(frame: &Frame, layers: &[Layer], blurred: Option<&[f32]>) -> Vec<u8> {
    let mut params = Layers {
        width: frame.width as i32,
        height: frame.height as i32,
        ..Layers::default()
    };
    let mut data: Vec<u8> = frame.rgb.clone();
    let mut tail = Vec::new(); // the tint's, which the program reads after the backdrop's
    for layer in layers {
        match layer {
            Layer::Backdrop { mask, backdrop } => {
                (params.mask_w, params.mask_h) = (mask.width as i32, mask.height as i32);
                (params.edge_low, params.edge_high) = EDGE;
                data.extend(mask.cells.iter().flat_map(|[p]| p.to_ne_bytes()));
                params.backdrop = match backdrop {
                    Backdrop::Flat(color) => {
                        params.color = color.map(i32::from);
                        1
                    }
                    Backdrop::Picture(picture) => {
                        data.extend(&picture.rgb);
                        2
                    }
                    Backdrop::Blurred => {
                        let (w, h) = blur::small_size(frame.width, frame.height);
                        (params.blurred_w, params.blurred_h) = (w as i32, h as i32);
                        data.extend(blurred.unwrap().iter().flat_map(|v| v.to_ne_bytes()));
                        3
                    }
                };
            }
            Layer::Tint {
                map,
                palette,
                filter,
            } => {
                params.tint = 1;
                (params.ids_w, params.ids_h) = (map.width as i32, map.height as i32);
                params.tint_point = i32::from(*filter == Filter::Point);
                tail.extend(map.ids);
                tail.extend(palette.iter().flatten().flat_map(|v| v.to_ne_bytes()));
            }
        }
    }
    let input = [bytes_of(&params), &data, &tail].concat();
    kernels_on_cpu(&["layers"], &input)
}

/// The blur backdrop's small picture as `blurred_on_gpu` makes it: shrunk by the
/// pre-processing kernel, then box-blurred along rows and columns in turn.
fn blurred_by_kernels(frame: &Frame) -> Vec<f32> {
    let (width, height) = blur::small_size(frame.width, frame.height);
    let shrink = InputSpec::stretched((width, height), Layout::Nhwc, [0.0; 3], [1.0; 3]);
    let input = crate::vision::preprocess::gpu::kernel_input(&shrink, frame);
    let mut cells = kernels_on_cpu(&["fit"], &input);
    let size = [
        width.to_string(),
        height.to_string(),
        blur::RADIUS.to_string(),
    ];
    for _ in 0..blur::PASSES {
        for along_columns in ["0", "1"] {
            let args = ["blur", &size[0], &size[1], &size[2], along_columns];
            cells = kernels_on_cpu(&args, &cells);
        }
    }
    crate::gpu::f32s_from(&cells)
}

fn painted_on_cpu(frame: &Frame, layers: &[Layer]) -> Vec<u8> {
    let mut frame = frame.clone();
    for layer in layers {
        layer.paint(&mut frame);
    }
    frame.rgb
}

#[test]
fn the_kernel_paints_a_backdrop_and_a_tint_as_the_cpu_does() {
    let mask = blob();
    let (ids, palette) = bands();
    for frame in [person(), images::fit(&person(), 1280, 720)] {
        let dog = Frame::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/dog.jpg"
        )))
        .unwrap();
        let picture = images::fit(&dog, frame.width, frame.height);
        for (backdrop, filter) in [
            (Backdrop::Flat([16, 32, 48]), Filter::Linear),
            (Backdrop::Picture(&picture), Filter::Point),
        ] {
            let layers = [
                Layer::Backdrop {
                    mask: &mask,
                    backdrop,
                },
                Layer::Tint {
                    map: ClassIds {
                        width: 33,
                        height: 21,
                        ids: &ids,
                    },
                    palette: palette.clone(),
                    filter,
                },
            ];
            let cpu = painted_on_cpu(&frame, &layers);
            let kernel = painted_by_kernel(&frame, &layers, None);
            // The same arithmetic in the same order (the GPU compiles without fused
            // multiply-adds): the same bytes.
            assert_eq!(
                crate::vision::layer::difference(&cpu, &kernel).0,
                0,
                "{}x{}",
                frame.width,
                frame.height
            );
            assert_ne!(cpu, frame.rgb, "the layers changed the frame");
        }
    }
}

#[test]
fn the_kernels_blur_the_backdrop_as_the_cpu_does() {
    let mask = blob();
    for frame in [person(), images::fit(&person(), 1280, 720)] {
        let layers = [Layer::Backdrop {
            mask: &mask,
            backdrop: Backdrop::Blurred,
        }];
        let cpu = painted_on_cpu(&frame, &layers);
        let blurred = blurred_by_kernels(&frame);
        let kernel = painted_by_kernel(&frame, &layers, Some(&blurred));
        // The CPU rounds the shrunk picture to 8 bits and blurs by running sums; the kernels
        // keep fractions and sum each box afresh: a level or two apart at most.
        let (largest, psnr) = crate::vision::layer::difference(&cpu, &kernel);
        assert!(
            largest <= 2 && psnr > 50.0,
            "{largest} levels, {psnr:.1} dB"
        );
    }
}
