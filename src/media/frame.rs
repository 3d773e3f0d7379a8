//! A frame: an RGB picture, 8 bits a channel, rows packed without padding.

use anyhow::Context;
use std::path::Path;

#[derive(Clone, PartialEq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, R G B, row after row.
    pub rgb: Vec<u8>,
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
        }
    }

    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> anyhow::Result<Frame> {
        anyhow::ensure!(
            rgb.len() == width as usize * height as usize * 3,
            "{} bytes is not a {width}x{height} RGB picture",
            rgb.len()
        );
        Ok(Frame { width, height, rgb })
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

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}
