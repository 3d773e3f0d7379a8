//! The blur backdrop: the frame shrunk, box-blurred small (cheap), and stretched back
//! bilinearly, which smooths it further. The GPU twin (`gpu.rs`) shrinks with the
//! pre-processing kernel and blurs with `box_blur`.

use crate::media::Frame;
use crate::vision::mask::{self, Filter, Grid};
use crate::vision::preprocess::resize;

/// The frame is shrunk this many times, then blurred `PASSES` times along rows and columns
/// with a box of `RADIUS`: near a Gaussian.
pub const SHRINK: u32 = 8;
pub const RADIUS: usize = 2;
pub const PASSES: usize = 3;

/// The size of the small picture a frame of `width` x `height` is blurred at.
pub fn small_size(width: u32, height: u32) -> (u32, u32) {
    ((width / SHRINK).max(1), (height / SHRINK).max(1))
}

/// The frame blurred: shrunk, box-blurred small, stretched back.
pub fn blurred_frame(frame: &Frame) -> Frame {
    let (width, height) = small_size(frame.width, frame.height);
    let small = resize(frame, width, height);
    let mut grid = Grid {
        width: small.width as usize,
        height: small.height as usize,
        cells: small
            .rgb
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]].map(f32::from))
            .collect(),
    };
    box_blur(&mut grid);
    let mut blurred = Frame::new(frame.width, frame.height);
    grid.paint(&mut blurred, Filter::Linear, |_, _, pixel, value| {
        for (p, v) in pixel.iter_mut().zip(value) {
            *p = mask::to_byte(v);
        }
    });
    blurred
}

/// `PASSES` box blurs of `RADIUS` along rows and columns.
fn box_blur(grid: &mut Grid<3>) {
    let mut scratch = Vec::new();
    for _ in 0..PASSES {
        box_blur_rows(grid, &mut scratch);
        transpose(grid, &mut scratch);
        box_blur_rows(grid, &mut scratch);
        transpose(grid, &mut scratch);
    }
}

/// A running-sum box blur of `RADIUS` along each row; edges repeat the last cell.
fn box_blur_rows(grid: &mut Grid<3>, scratch: &mut Vec<[f32; 3]>) {
    let width = grid.width;
    let last = width as isize - 1;
    let n = (2 * RADIUS + 1) as f32;
    scratch.clear();
    for row in grid.cells.chunks_exact(width) {
        let at = |i: isize| row[i.clamp(0, last) as usize];
        let r = RADIUS as isize;
        let mut sum = (-r..=r).fold([0.0; 3], |s, i| add(s, at(i), 1.0));
        for x in 0..width as isize {
            scratch.push(sum.map(|v| v / n));
            sum = add(add(sum, at(x + r + 1), 1.0), at(x - r), -1.0);
        }
    }
    std::mem::swap(&mut grid.cells, scratch);
}

fn add(a: [f32; 3], b: [f32; 3], sign: f32) -> [f32; 3] {
    std::array::from_fn(|i| a[i] + sign * b[i])
}

/// Swaps rows and columns, so the row blur works down columns too.
fn transpose(grid: &mut Grid<3>, scratch: &mut Vec<[f32; 3]>) {
    let (width, height) = (grid.width, grid.height);
    scratch.clear();
    scratch.extend((0..width * height).map(|i| grid.cells[(i % height) * width + i / height]));
    std::mem::swap(&mut grid.cells, scratch);
    (grid.width, grid.height) = (height, width);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposing_and_the_box_blur() {
        // A transposed grid keeps every value where rows and columns swap.
        let mut grid = Grid {
            width: 3,
            height: 2,
            cells: (0..6).map(|i| [i as f32; 3]).collect(),
        };
        let mut scratch = Vec::new();
        transpose(&mut grid, &mut scratch);
        assert_eq!((grid.width, grid.height), (2, 3));
        assert_eq!(
            grid.cells.iter().map(|c| c[0]).collect::<Vec<_>>(),
            [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        // The box blur keeps a flat row flat and spreads a spike over 2 * radius + 1 cells.
        let mut row = Grid {
            width: 9,
            height: 1,
            cells: (0..9)
                .map(|i| [if i == 4 { 5.0 } else { 0.0 }; 3])
                .collect(),
        };
        box_blur_rows(&mut row, &mut scratch);
        let values: Vec<f32> = row.cells.iter().map(|c| c[0]).collect();
        assert_eq!(values, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }
}
