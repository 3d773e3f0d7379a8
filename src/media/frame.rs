//! A frame: an RGB picture, 8 bits a channel, rows packed without padding.

use anyhow::Context;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, PartialEq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, R G B, row after row.
    pub rgb: Vec<u8>,
    /// When its data reached visiond from the network (WHIP), for the latency figures.
    pub received: Option<Instant>,
    /// The same pixels on the GPU, once a model asked for them there. Models run before
    /// anything draws on a frame; whatever changes `rgb` after that calls `forget_gpu_copy`.
    #[cfg(feature = "gpu")]
    device: crate::gpu::frame::DeviceCopy,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{})", self.width, self.height)
    }
}

impl Frame {
    /// A black frame.
    pub fn new(width: u32, height: u32) -> Frame {
        Frame {
            width,
            height,
            rgb: vec![0; width as usize * height as usize * 3],
            received: None,
            #[cfg(feature = "gpu")]
            device: Default::default(),
        }
    }

    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> anyhow::Result<Frame> {
        anyhow::ensure!(
            rgb.len() == width as usize * height as usize * 3,
            "{} bytes is not a {width}x{height} RGB picture",
            rgb.len()
        );
        Ok(Frame {
            width,
            height,
            rgb,
            received: None,
            #[cfg(feature = "gpu")]
            device: Default::default(),
        })
    }

    /// Decodes a JPEG or PNG file.
    pub fn load(path: &Path) -> anyhow::Result<Frame> {
        let picture =
            image::open(path).with_context(|| format!("cannot read picture {}", path.display()))?;
        let rgb = picture.into_rgb8();
        Ok(Frame {
            width: rgb.width(),
            height: rgb.height(),
            rgb: rgb.into_raw(),
            received: None,
            #[cfg(feature = "gpu")]
            device: Default::default(),
        })
    }

    /// Encodes as JPEG or PNG, by the file's extension.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        image::save_buffer(
            path,
            &self.rgb,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("cannot write picture {}", path.display()))
    }

    /// The pixels on `gpu`, uploaded at the first call (models side by side share it).
    #[cfg(feature = "gpu")]
    pub fn on_gpu(
        &self,
        gpu: &'static crate::gpu::Gpu,
    ) -> anyhow::Result<std::sync::Arc<crate::gpu::frame::OnGpu>> {
        self.device.get(gpu, self.width, self.height, &self.rgb)
    }

    /// The GPU copy, if a model made one: the frame is on the GPU already.
    #[cfg(feature = "gpu")]
    pub fn gpu_copy(&self) -> Option<std::sync::Arc<crate::gpu::frame::OnGpu>> {
        self.device.made()
    }

    /// Drops the GPU copy, if any: the pixels are about to change.
    pub fn forget_gpu_copy(&mut self) {
        #[cfg(feature = "gpu")]
        self.device.forget();
    }

    /// The frame turned as `[input] flip` says: none | horizontal | vertical | rotate-180.
    pub fn flipped(mut self, flip: &str) -> Frame {
        self.forget_gpu_copy();
        let (width, height) = (self.width as usize, self.height as usize);
        let row = width * 3;
        if matches!(flip, "horizontal" | "rotate-180") {
            for line in self.rgb.chunks_exact_mut(row) {
                for x in 0..width / 2 {
                    let (a, b) = (x * 3, (width - 1 - x) * 3);
                    for c in 0..3 {
                        line.swap(a + c, b + c);
                    }
                }
            }
        }
        if matches!(flip, "vertical" | "rotate-180") {
            for y in 0..height / 2 {
                let (top, bottom) = self.rgb.split_at_mut((height - 1 - y) * row);
                top[y * row..(y + 1) * row].swap_with_slice(&mut bottom[..row]);
            }
        }
        self
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(width: u32, height: u32) -> Frame {
        let rgb = (0..width * height).flat_map(|i| [i as u8, 0, 0]).collect();
        Frame::from_rgb(width, height, rgb).unwrap()
    }

    #[test]
    fn flips_move_pixels_where_they_belong() {
        let frame = numbered(3, 2); // 0 1 2 / 3 4 5
        assert_eq!(frame.clone().flipped("horizontal").pixel(0, 0)[0], 2);
        assert_eq!(frame.clone().flipped("vertical").pixel(0, 0)[0], 3);
        let turned = frame.clone().flipped("rotate-180");
        assert_eq!((turned.pixel(0, 0)[0], turned.pixel(2, 1)[0]), (5, 0));
        assert_eq!(frame.clone().flipped("none"), frame);
    }
}
