//! fast_image_resize's resize coefficients for one axis, worked out as it works them out for
//! 8-bit pixels (its `precompute_coefficients` and `Normalizer16`, fast_image_resize 6), so
//! that the GPU kernel resizes to the bit as the CPU path does: a triangle filter widened
//! when shrinking, weights normalised in f64, then rounded to i16 at the largest precision
//! that keeps the largest weight in range.

/// Per output pixel: the first source pixel, how many, and `window` weights scaled by
/// 2^`precision` (unused ones zero).
#[derive(Debug, PartialEq)]
pub struct AxisTaps {
    pub starts: Vec<i32>,
    pub sizes: Vec<i32>,
    pub weights: Vec<i16>,
    pub window: usize,
    pub precision: i32,
}

/// fast_image_resize's bits of precision for the sums (32 - 8 - 2) and for a weight (15).
const PRECISION_BITS: u32 = 22;
const MAX_WEIGHT_BITS: u32 = 15;

impl AxisTaps {
    /// `out` output pixels from the source span `from..from + length` of an axis `size`
    /// long. Where fast_image_resize skips the pass (the same length at a whole offset), each
    /// output pixel is its source pixel.
    pub fn new(size: u32, from: f64, length: f64, out: u32) -> AxisTaps {
        if f64::from(out) == length && from == from.round() {
            return AxisTaps::identity(from as i32, out);
        }
        let scale = length / f64::from(out);
        let filter_scale = scale.max(1.0);
        let radius = filter_scale; // the triangle's support is 1
        let window = radius.ceil() as usize * 2 + 1;
        let (mut starts, mut sizes) = (Vec::new(), Vec::new());
        let mut values: Vec<f64> = Vec::with_capacity(window * out as usize);
        for i in 0..out {
            let centre = from + (f64::from(i) + 0.5) * scale;
            let low = (centre - radius).floor().max(0.0) as u32;
            let high = (centre + radius).ceil().min(f64::from(size)) as u32;
            let first = values.len();
            let (mut start, mut end, mut total) = (low, high, 0.0);
            for x in low..high {
                let w = triangle((f64::from(x) - (centre - 0.5)) / filter_scale);
                if x == start && w == 0.0 {
                    start += 1; // no zero weights at the start
                } else {
                    values.push(w);
                    total += w;
                }
            }
            for &w in values[first..].iter().rev() {
                if end <= start || w != 0.0 {
                    break;
                }
                end -= 1; // nor at the end
            }
            if total != 0.0 {
                values[first..].iter_mut().for_each(|w| *w /= total);
            }
            values.resize(first + window, 0.0);
            starts.push(start as i32);
            sizes.push((end - start) as i32);
        }
        let largest = values.iter().copied().fold(0.0, f64::max);
        let mut precision = 0;
        for bits in 0..PRECISION_BITS {
            precision = bits;
            if (largest * f64::from(1u32 << (bits + 1))).round() as i32 >= 1 << MAX_WEIGHT_BITS {
                break;
            }
        }
        let scaled = f64::from(1u32 << precision);
        let mut weights = vec![0i16; values.len()];
        for (chunk, (out, &size)) in values
            .chunks_exact(window)
            .zip(weights.chunks_exact_mut(window).zip(&sizes))
        {
            for (w, v) in out.iter_mut().zip(&chunk[..size as usize]) {
                *w = (v * scaled).round() as i16;
            }
        }
        AxisTaps {
            starts,
            sizes,
            weights,
            window,
            precision: precision as i32,
        }
    }

    /// Output pixel `i` is source pixel `first + i`.
    fn identity(first: i32, out: u32) -> AxisTaps {
        const PRECISION: i32 = 14;
        AxisTaps {
            starts: (0..out as i32).map(|i| first + i).collect(),
            sizes: vec![1; out as usize],
            weights: vec![1 << PRECISION; out as usize],
            window: 1,
            precision: PRECISION,
        }
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point_and_stay_inside_the_source() {
        let taps = AxisTaps::new(1280, 0.0, 1280.0, 224);
        assert_eq!(taps.starts.len(), 224);
        for (i, (&start, &size)) in taps.starts.iter().zip(&taps.sizes).enumerate() {
            assert!(start >= 0 && start + size <= 1280, "{i}");
            let row = &taps.weights[i * taps.window..][..size as usize];
            let sum: i32 = row.iter().map(|&w| i32::from(w)).sum();
            assert!((sum - (1 << taps.precision)).abs() <= size, "{i}: {sum}");
        }
        // Shrinking 5.7 times widens the filter: a window of 2 * 6 + 1.
        assert_eq!(taps.window, 13);
    }

    #[test]
    fn the_same_length_at_a_whole_offset_copies_pixels() {
        let taps = AxisTaps::new(100, 10.0, 50.0, 50);
        assert_eq!((taps.starts[0], taps.starts[49], taps.window), (10, 59, 1));
        assert_eq!(taps.weights[0], 1 << taps.precision);
    }
}
