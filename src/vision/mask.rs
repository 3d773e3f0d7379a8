//! Low-resolution maps (a model's person mask or class colours, a blurred picture)
//! stretched over the frame: bilinear ("linear") or nearest cell ("point"). Sampling
//! positions are worked out once per frame axis and the grid is blended vertically once
//! per frame row, so a pixel costs one blend of `N` values and nothing is allocated per
//! pixel.

use crate::engine::Tensor;
use crate::media::Frame;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Filter {
    Linear,
    Point,
}

impl Filter {
    /// The `filter_mode` setting: "point", else linear.
    pub fn parse(text: &str) -> Filter {
        match text {
            "point" => Filter::Point,
            _ => Filter::Linear,
        }
    }
}

/// `N` values per cell, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<const N: usize> {
    pub width: usize,
    pub height: usize,
    pub cells: Vec<[f32; N]>,
}

/// Where one frame pixel samples along one grid axis: two cells and the second's weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    pub low: usize,
    pub high: usize,
    pub weight: f32,
}

impl Tap {
    /// The two cells around `position` (in cells, clamped to the grid) for `filter`.
    fn at(position: f32, last: usize, filter: Filter) -> Tap {
        let position = position.clamp(0.0, last as f32);
        match filter {
            Filter::Point => {
                let cell = (position.round() as usize).min(last);
                Tap {
                    low: cell,
                    high: cell,
                    weight: 0.0,
                }
            }
            Filter::Linear => {
                let low = position as usize;
                Tap {
                    low,
                    high: (low + 1).min(last),
                    weight: position - low as f32,
                }
            }
        }
    }
}

impl<const N: usize> Grid<N> {
    /// Stretches the grid over `frame`: `paint(x, y, pixel, value)` for every pixel, with
    /// the grid's value there. A large frame is painted in bands of rows on several threads:
    /// these full-frame blends are most of the pipeline's own time when the models run on a
    /// GPU (docs/benchmarks.md).
    pub fn paint(
        &self,
        frame: &mut Frame,
        filter: Filter,
        paint: impl Fn(usize, usize, &mut [u8], [f32; N]) + Sync,
    ) {
        let columns = taps(frame.width as usize, self.width, filter);
        let rows = taps(frame.height as usize, self.height, filter);
        let stride = frame.width as usize * 3;
        let band_rows = rows.len().div_ceil(band_count(frame)).max(1);
        let mut bands = frame
            .rgb
            .chunks_mut(stride * band_rows)
            .zip(rows.chunks(band_rows));
        let band = |(first, (pixels, rows)): (usize, (&mut [u8], &[Tap]))| {
            self.paint_rows(pixels, first * band_rows, rows, &columns, &paint);
        };
        let Some(first) = bands.next() else {
            return;
        };
        std::thread::scope(|scope| {
            for (i, rest) in bands.enumerate() {
                scope.spawn(move || band((i + 1, rest)));
            }
            band((0, first)); // this thread paints the first band meanwhile
        });
    }

    /// Paints `pixels`, the frame's rows from `first_row` on, one tap in `rows` each.
    fn paint_rows(
        &self,
        pixels: &mut [u8],
        first_row: usize,
        rows: &[Tap],
        columns: &[Tap],
        paint: &impl Fn(usize, usize, &mut [u8], [f32; N]),
    ) {
        // The grid blended between the two rows a frame row falls between.
        let mut line = vec![[0.0; N]; self.width];
        let mut blended: Option<Tap> = None;
        let stride = columns.len() * 3;
        for (y, (pixels, &row)) in pixels.chunks_exact_mut(stride).zip(rows).enumerate() {
            if blended != Some(row) {
                let (low, high) = (self.row(row.low), self.row(row.high));
                for ((out, a), b) in line.iter_mut().zip(low).zip(high) {
                    *out = mix(a, b, row.weight);
                }
                blended = Some(row);
            }
            for (x, (pixel, column)) in pixels.chunks_exact_mut(3).zip(columns).enumerate() {
                let value = mix(&line[column.low], &line[column.high], column.weight);
                paint(x, first_row + y, pixel, value);
            }
        }
    }

    fn row(&self, row: usize) -> &[[f32; N]] {
        &self.cells[row * self.width..(row + 1) * self.width]
    }
}

/// How many bands `paint` cuts a frame into: one per core (at most 8), a single one for
/// frames too small to be worth a thread.
fn band_count(frame: &Frame) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    const PIXELS_PER_BAND: usize = 128 * 1024;
    let pixels = frame.width as usize * frame.height as usize;
    (pixels / PIXELS_PER_BAND).clamp(1, cores.min(8))
}

/// A colour value (0..=255, as blends of pixels give) to a byte, rounded. Cheaper than
/// `f32::round`, which is a library call on the per-pixel path.
#[inline]
pub fn to_byte(value: f32) -> u8 {
    (value + 0.5) as u8
}

#[inline]
fn mix<const N: usize>(a: &[f32; N], b: &[f32; N], t: f32) -> [f32; N] {
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * t)
}

/// Pixel centres of a `frame`-long axis mapped onto `grid` cell centres.
fn taps(frame: usize, grid: usize, filter: Filter) -> Vec<Tap> {
    let scale = grid as f32 / frame.max(1) as f32;
    let last = grid.saturating_sub(1);
    (0..frame)
        .map(|x| {
            let centre = (x as f32 + 0.5) * scale;
            // The nearest cell is the one the centre falls in; blends go between centres.
            match filter {
                Filter::Point => Tap::at(centre.floor(), last, filter),
                Filter::Linear => Tap::at(centre - 0.5, last, filter),
            }
        })
        .collect()
}

/// How a model's output grid lies over its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alignment {
    /// Each cell covers an equal block of input pixels, its value at the block's centre.
    Centres,
    /// The first and last cells sit on the first and last input pixels (TensorFlow's
    /// `align_corners`, as DeepLab upsamples its logits).
    Corners,
}

/// `count` pixels of an `input`-pixel axis, from pixel `first` on, mapped onto a `grid`
/// laid over the input as `alignment` says.
pub fn input_taps(
    (first, count): (f32, usize),
    input: usize,
    grid: usize,
    alignment: Alignment,
    filter: Filter,
) -> Vec<Tap> {
    let last = grid.saturating_sub(1);
    let position = |pixel: f32| match alignment {
        Alignment::Corners => pixel * last as f32 / input.saturating_sub(1).max(1) as f32,
        Alignment::Centres => (pixel + 0.5) * grid as f32 / input.max(1) as f32 - 0.5,
    };
    (0..count)
        .map(|i| Tap::at(position(first + i as f32), last, filter))
        .collect()
}

/// A person-probability output laid out [1,H,W,1] (MediaPipe selfie) or [1,1,H,W]
/// (U2-Net) as a grid.
pub fn probability_grid(output: &Tensor) -> anyhow::Result<Grid<1>> {
    let (height, width) = match output.shape.as_slice() {
        &[1, h, w, 1] | &[1, 1, h, w] => (h, w),
        shape => anyhow::bail!("mask shape {shape:?} is not [1,H,W,1] or [1,1,H,W]"),
    };
    Ok(Grid {
        width,
        height,
        cells: output.as_f32().iter().map(|&p| [p]).collect(),
    })
}

/// The share of cells whose probability is above one half.
pub fn share_above_half(grid: &Grid<1>) -> f32 {
    let above = grid.cells.iter().filter(|c| c[0] > 0.5).count();
    above as f32 / grid.cells.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_cells() -> Grid<1> {
        Grid {
            width: 2,
            height: 1,
            cells: vec![[0.0], [1.0]],
        }
    }

    /// The grid painted over a frame `width` x `height`: its value at each pixel.
    fn painted(grid: &Grid<1>, width: u32, height: u32, filter: Filter) -> Vec<Vec<f32>> {
        let values = vec![vec![f32::NAN; width as usize]; height as usize];
        let values = std::sync::Mutex::new(values);
        let mut frame = Frame::new(width, height);
        grid.paint(&mut frame, filter, |x, y, _, [v]| {
            values.lock().unwrap()[y][x] = v;
        });
        values.into_inner().unwrap()
    }

    #[test]
    fn a_large_frame_painted_in_bands_gets_every_row_once_at_its_place() {
        let grid = Grid {
            width: 2,
            height: 2,
            cells: vec![[0.0], [1.0], [0.0], [1.0]],
        };
        let mut frame = Frame::new(1280, 720);
        grid.paint(&mut frame, Filter::Linear, |x, y, pixel, [v]| {
            let row = y as u16;
            pixel.copy_from_slice(&[row as u8, (row >> 8) as u8, to_byte(v * 255.0)]);
            assert!(x < 1280);
        });
        for (y, row) in frame.rgb.chunks_exact(1280 * 3).enumerate() {
            let expected = [y as u8, (y >> 8) as u8];
            assert!(row.chunks_exact(3).all(|p| p[..2] == expected), "row {y}");
            // The grid's left column is 0 and its right 1, whatever the band.
            assert_eq!((row[2], row[1280 * 3 - 1]), (0, 255), "row {y}");
        }
    }

    #[test]
    fn linear_blends_between_cell_centres_and_clamps_at_the_edges() {
        let values = painted(&two_cells(), 8, 2, Filter::Linear);
        let row = &values[1];
        // The cell centres fall at frame positions 2.0 and 6.0; outside them, flat.
        assert_eq!(row[0], 0.0);
        assert_eq!(row[1], 0.0);
        assert!((row[2] - 0.125).abs() < 1e-6, "{row:?}");
        assert!((row[4] - 0.625).abs() < 1e-6, "{row:?}");
        assert_eq!(row[7], 1.0);
        assert_eq!(values[0], values[1]);
        // Down a column likewise: two rows of cells over four frame rows.
        let column = Grid {
            width: 1,
            height: 2,
            cells: vec![[0.0], [1.0]],
        };
        let values = painted(&column, 1, 4, Filter::Linear);
        assert_eq!(values, [[0.0], [0.25], [0.75], [1.0]]);
    }

    #[test]
    fn input_taps_put_cells_on_corners_or_block_centres() {
        // Corners: 9 input pixels over 3 cells: pixels 0, 4, 8 are cells 0, 1, 2.
        let linear = input_taps((0.0, 9), 9, 3, Alignment::Corners, Filter::Linear);
        assert_eq!((linear[0].low, linear[0].weight), (0, 0.0));
        assert_eq!(
            (linear[2].low, linear[2].high, linear[2].weight),
            (0, 1, 0.5)
        );
        assert_eq!((linear[8].low, linear[8].high), (2, 2));
        // From pixel 6 on, 2 pixels: cell positions 1.5 and 1.75; nearest 2 and 2.
        let point = input_taps((6.0, 2), 9, 3, Alignment::Corners, Filter::Point);
        assert_eq!(point.iter().map(|t| t.low).collect::<Vec<_>>(), [2, 2]);
        // Centres: 8 pixels over 2 cells of 4; pixel 3 is 3/8 of the way from cell 0 to 1.
        let centres = input_taps((0.0, 8), 8, 2, Alignment::Centres, Filter::Linear);
        assert_eq!(
            (centres[3].low, centres[3].high, centres[3].weight),
            (0, 1, 0.375)
        );
        assert_eq!((centres[0].low, centres[0].weight), (0, 0.0));
    }

    #[test]
    fn point_takes_the_nearest_cell() {
        let values = painted(&two_cells(), 8, 1, Filter::Point);
        assert_eq!(values[0], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn paint_hands_over_each_pixel() {
        let mut frame = Frame::new(3, 2);
        two_cells().paint(&mut frame, Filter::Point, |x, y, pixel, _| {
            pixel[0] = (10 * y + x) as u8;
        });
        assert_eq!(frame.pixel(2, 1)[0], 12);
        assert_eq!(frame.pixel(0, 1)[0], 10);
    }

    #[test]
    fn bytes_round_to_nearest_and_saturate() {
        assert_eq!(to_byte(0.49), 0);
        assert_eq!(to_byte(0.5), 1);
        assert_eq!(to_byte(254.6), 255);
        assert_eq!(to_byte(255.0), 255);
        assert_eq!(to_byte(-3.0), 0);
    }

    #[test]
    fn probability_grids_from_both_layouts() {
        let nhwc = Tensor::f32(vec![1, 2, 3, 1], vec![0.0, 0.6, 0.2, 0.9, 1.0, 0.1]);
        let grid = probability_grid(&nhwc).unwrap();
        assert_eq!((grid.width, grid.height), (3, 2));
        assert_eq!(share_above_half(&grid), 0.5);
        let nchw = Tensor::f32(vec![1, 1, 2, 3], vec![0.0; 6]);
        assert_eq!(probability_grid(&nchw).unwrap().width, 3);
        let wrong = Tensor::f32(vec![1, 2, 3], vec![0.0; 6]);
        assert!(probability_grid(&wrong).is_err());
    }
}
