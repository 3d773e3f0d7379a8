//! The `v4l2:` source: a USB or CSI camera through Video4Linux2, in YUYV or MJPEG, with the
//! size and rate negotiated with the driver (which may pick the nearest it has; the chosen
//! format is logged). Unplugging the camera fails the next read; the capture thread then
//! reopens it with backoff until it is back.

use super::source::Source;
use super::Frame;
use anyhow::Context;
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

/// No frame for this long: the camera is taken as gone.
const QUIET_LIMIT: Duration = Duration::from_secs(5);
/// Above this many pixels raw YUYV does not fit USB 2 at usual rates: prefer MJPEG.
const RAW_LIMIT: u32 = 640 * 480;

/// The pixel formats we decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pixels {
    Yuyv,
    Mjpeg,
}

impl Pixels {
    fn fourcc(self) -> FourCC {
        FourCC::new(match self {
            Pixels::Yuyv => b"YUYV",
            Pixels::Mjpeg => b"MJPG",
        })
    }

    /// One captured buffer as an RGB frame.
    pub fn decode(
        self,
        data: &[u8],
        width: u32,
        height: u32,
        stride: u32,
    ) -> anyhow::Result<Frame> {
        match self {
            Pixels::Yuyv => yuyv_to_rgb(data, width, height, stride),
            Pixels::Mjpeg => {
                let jpeg = with_default_tables(data);
                let picture = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                    .context("an MJPEG frame does not decode")?
                    .into_rgb8();
                Frame::from_rgb(picture.width(), picture.height(), picture.into_raw())
            }
        }
    }
}

/// The formats to ask for, best first, among those the camera offers.
pub fn preference(offered: &[FourCC], width: u32, height: u32) -> anyhow::Result<Vec<Pixels>> {
    let order = if width * height > RAW_LIMIT {
        [Pixels::Mjpeg, Pixels::Yuyv]
    } else {
        [Pixels::Yuyv, Pixels::Mjpeg]
    };
    let usable: Vec<Pixels> = order
        .into_iter()
        .filter(|p| offered.contains(&p.fourcc()))
        .collect();
    anyhow::ensure!(
        !usable.is_empty(),
        "the camera offers neither YUYV nor MJPEG (it has {})",
        offered
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(usable)
}

pub struct Camera {
    stream: v4l::io::mmap::Stream<'static>,
    pixels: Pixels,
    format: Format,
}

impl Camera {
    pub fn open(path: &str, width: u32, height: u32, fps: u32) -> anyhow::Result<Camera> {
        let device = Device::with_path(path).with_context(|| format!("cannot open {path}"))?;
        let card = device
            .query_caps()
            .with_context(|| format!("{path} is not a V4L2 device"))?
            .card;
        let offered: Vec<FourCC> = device
            .enum_formats()
            .with_context(|| format!("{path} ({card}) lists no formats"))?
            .iter()
            .map(|d| d.fourcc)
            .collect();
        let mut chosen = None;
        for pixels in preference(&offered, width, height)? {
            let format = device.set_format(&Format::new(width, height, pixels.fourcc()))?;
            if format.fourcc == pixels.fourcc() {
                chosen = Some((pixels, format));
                break;
            }
        }
        let (pixels, format) = chosen.context("the camera refused both YUYV and MJPEG")?;
        // Not every driver lets the rate be set; it then runs at its own.
        let rate = device
            .set_params(&Parameters::with_fps(fps))
            .map(|p| format!("{}/{}", p.interval.denominator, p.interval.numerator))
            .unwrap_or_else(|e| format!("its own rate ({e})"));
        tracing::info!(
            "{path} ({card}): {} {}x{} at {rate} frames/s (asked {width}x{height} at {fps})",
            format.fourcc,
            format.width,
            format.height
        );
        let mut stream = v4l::io::mmap::Stream::with_buffers(&device, Type::VideoCapture, 4)
            .with_context(|| format!("cannot stream from {path}"))?;
        stream.set_timeout(QUIET_LIMIT);
        Ok(Camera {
            stream,
            pixels,
            format,
        })
    }
}

impl Source for Camera {
    fn next_frame(&mut self) -> anyhow::Result<Frame> {
        let (data, meta) = self.stream.next().context("the camera stopped")?;
        let used = (meta.bytesused as usize).min(data.len());
        let f = &self.format;
        self.pixels
            .decode(&data[..used], f.width, f.height, f.stride)
    }
}

/// The JPEG's header segments, up to the scan: each one's marker and bytes.
fn header_segments(jpeg: &[u8]) -> impl Iterator<Item = (u8, std::ops::Range<usize>)> + '_ {
    let mut at = 2;
    std::iter::from_fn(move || {
        let head = jpeg.get(at..at + 4)?;
        if head[0] != 0xff || head[1] == 0xda {
            return None;
        }
        let start = at;
        at += 2 + u16::from_be_bytes([head[2], head[3]]) as usize;
        Some((head[1], start..at))
    })
}

/// Webcams leave the standard Huffman tables (DHT) out of their MJPEG frames. An `AVI1`
/// APP0 segment after the start marker is how the decoder learns to use the standard ones.
fn with_default_tables(jpeg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const DHT: u8 = 0xc4;
    const AVI1: [u8; 9] = [0xff, 0xe0, 0, 7, b'A', b'V', b'I', b'1', 0];
    if jpeg.len() < 2 || header_segments(jpeg).any(|(marker, _)| marker == DHT) {
        return jpeg.into();
    }
    [&jpeg[..2], &AVI1, &jpeg[2..]].concat().into()
}

/// YUYV 4:2:2 (Y0 U Y1 V for each two pixels), BT.601 limited range, to RGB.
fn yuyv_to_rgb(data: &[u8], width: u32, height: u32, stride: u32) -> anyhow::Result<Frame> {
    let (w, h) = (width as usize, height as usize);
    let stride = (stride as usize).max(w * 2);
    anyhow::ensure!(
        data.len() >= stride * (h - 1) + w * 2,
        "a YUYV frame of {} bytes is short of {width}x{height}",
        data.len()
    );
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in data.chunks(stride).take(h) {
        for quad in row[..w * 2].chunks_exact(4) {
            let (u, v) = (quad[1] as f32 - 128.0, quad[3] as f32 - 128.0);
            for y in [quad[0], quad[2]] {
                let y = 1.164 * (y as f32 - 16.0);
                rgb.extend(
                    [y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u]
                        .map(|c| c.round().clamp(0.0, 255.0) as u8),
                );
            }
        }
    }
    Frame::from_rgb(width, height, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_frames_prefer_mjpeg_and_only_offered_formats_are_tried() {
        let both = [FourCC::new(b"YUYV"), FourCC::new(b"MJPG")];
        assert_eq!(
            preference(&both, 1280, 720).unwrap(),
            [Pixels::Mjpeg, Pixels::Yuyv]
        );
        assert_eq!(
            preference(&both, 640, 480).unwrap(),
            [Pixels::Yuyv, Pixels::Mjpeg]
        );
        assert_eq!(preference(&both[..1], 1920, 1080).unwrap(), [Pixels::Yuyv]);
        let error = preference(&[FourCC::new(b"NV12")], 640, 480).unwrap_err();
        assert!(error.to_string().contains("NV12"), "{error}");
    }

    #[test]
    fn yuyv_decodes_to_the_colours_it_encodes() {
        // Two rows of 2 pixels, rows padded to 6 bytes: white and black, then red twice.
        let data = [235, 128, 16, 128, 0, 0, 81, 90, 81, 240, 0, 0];
        let frame = Pixels::Yuyv.decode(&data, 2, 2, 6).unwrap();
        assert_eq!(frame.pixel(0, 0), [255, 255, 255]);
        assert_eq!(frame.pixel(1, 0), [0, 0, 0]);
        let red = frame.pixel(0, 1);
        assert!(red[0] > 250 && red[1] < 5 && red[2] < 5, "{red:?}");
        assert!(Pixels::Yuyv.decode(&data[..5], 2, 2, 6).is_err());
    }

    #[test]
    fn mjpeg_decodes_even_without_huffman_tables() {
        let mut jpeg = Vec::new();
        let picture = image::RgbImage::from_fn(32, 16, |x, _| image::Rgb([x as u8 * 8, 100, 200]));
        picture
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let frame = Pixels::Mjpeg.decode(&jpeg, 32, 16, 0).unwrap();
        assert_eq!((frame.width, frame.height), (32, 16));
        let [r, g, b] = frame.pixel(16, 8);
        assert!(r.abs_diff(128) < 12 && g.abs_diff(100) < 12 && b.abs_diff(200) < 12);
        // Webcams leave out the standard Huffman tables (DHT segments) in their MJPEG.
        let bare = without_segment(&jpeg, 0xc4);
        assert!(bare.len() < jpeg.len());
        assert_eq!(
            Pixels::Mjpeg.decode(&bare, 32, 16, 0).unwrap().rgb,
            frame.rgb
        );
    }

    /// The JPEG without its header segments of one marker type.
    fn without_segment(jpeg: &[u8], unwanted: u8) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut scan = 2;
        for (marker, bytes) in header_segments(jpeg) {
            scan = bytes.end;
            if marker != unwanted {
                out.extend_from_slice(&jpeg[bytes]);
            }
        }
        out.extend_from_slice(&jpeg[scan..]);
        out
    }
}
