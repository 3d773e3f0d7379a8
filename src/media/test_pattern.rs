//! The `test` source: a moving pattern with a frame counter and the clock, at the configured
//! size and rate, so a first run shows motion with no camera.

use super::source::{Pacer, Source};
use super::Frame;
use crate::vision::overlay;

pub struct TestPattern {
    width: u32,
    height: u32,
    number: u64,
    pacer: Pacer,
}

impl TestPattern {
    pub fn new(width: u32, height: u32, fps: u32) -> TestPattern {
        TestPattern {
            width,
            height,
            number: 0,
            pacer: Pacer::new(fps),
        }
    }

    /// Frame `number` of the pattern: colour bars scrolling sideways and a box bouncing.
    pub fn draw(&self, number: u64) -> Frame {
        const BARS: [[u8; 3]; 7] = [
            [192, 192, 192],
            [192, 192, 0],
            [0, 192, 192],
            [0, 192, 0],
            [192, 0, 192],
            [192, 0, 0],
            [0, 0, 192],
        ];
        let (w, h) = (self.width as usize, self.height as usize);
        let mut frame = Frame::new(self.width, self.height);
        let shift = number as usize * 4;
        for (i, pixel) in frame.rgb[..w * 3].chunks_exact_mut(3).enumerate() {
            pixel.copy_from_slice(&BARS[((i + shift) % w) * BARS.len() / w]);
        }
        let (first, rest) = frame.rgb.split_at_mut(w * 3);
        for row in rest.chunks_exact_mut(w * 3).take(h * 2 / 3) {
            row.copy_from_slice(first);
        }
        let side = (h / 6).max(8) as i32;
        let span = (w as i32 - side).max(1);
        let travel = (number as i32 * 8) % (2 * span);
        let x = if travel < span {
            travel
        } else {
            2 * span - travel
        };
        overlay::fill_rect(
            &mut frame,
            x,
            (h * 3 / 4) as i32,
            x + side,
            (h * 3 / 4) as i32 + side,
            [255, 255, 255],
            255,
        );
        let clock = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        overlay::text(
            &mut frame,
            16,
            (h * 2 / 3) as i32 + 8,
            &format!("frame {number}  {clock}"),
            [255, 255, 255],
            None,
            2,
        );
        frame
    }
}

impl Source for TestPattern {
    fn next_frame(&mut self) -> anyhow::Result<Frame> {
        self.pacer.wait();
        self.number += 1;
        Ok(self.draw(self.number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_moves_and_has_the_configured_size() {
        let pattern = TestPattern::new(320, 180, 30);
        let (a, b) = (pattern.draw(1), pattern.draw(2));
        assert_eq!((a.width, a.height, a.rgb.len()), (320, 180, 320 * 180 * 3));
        assert_ne!(a.rgb, b.rgb);
    }
}
