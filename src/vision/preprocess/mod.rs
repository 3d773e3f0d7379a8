//! Turning frames into model inputs: fitting the frame to the input (stretched, letterboxed,
//! padded or centre-cropped, as the model's authors did), resizing, and packing the pixels
//! into a normalised tensor in the model's layout.

#[cfg(feature = "gpu")]
pub(crate) mod gpu;

use super::catalog::Entry;
use crate::engine::{DType, Engine, Tensor, TensorData};
use crate::media::Frame;
use anyhow::Context as _;
use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Stretches `frame` to `width` x `height` with a bilinear (triangle) filter that widens when
/// shrinking, like PIL's `BILINEAR`: the resize the reference results were made with.
pub fn resize(frame: &Frame, width: u32, height: u32) -> Frame {
    let whole = [0.0, 0.0, frame.width as f32, frame.height as f32];
    resize_region(frame, whole, width, height)
}

/// Stretches the part `region` (x1, y1, x2, y2 in frame pixels) of `frame` to `width` x
/// `height`. Where the region reaches outside the frame the result is black.
pub fn resize_region(frame: &Frame, region: [f32; 4], width: u32, height: u32) -> Frame {
    resize_region_padded(frame, region, width, height, 0)
}

/// `resize_region` with `pad` (grey level) where the region reaches outside the frame.
fn resize_region_padded(
    frame: &Frame,
    region: [f32; 4],
    width: u32,
    height: u32,
    pad: u8,
) -> Frame {
    let mut out = Frame::new(width, height);
    out.rgb.fill(pad);
    let (Some(columns), Some(rows)) = (
        Span::inside(region[0], region[2], frame.width, width),
        Span::inside(region[1], region[3], frame.height, height),
    ) else {
        return out;
    };
    let (Ok(source), Ok(mut target)) = (
        ImageRef::new(frame.width, frame.height, &frame.rgb, PixelType::U8x3),
        Image::from_slice_u8(width, height, &mut out.rgb, PixelType::U8x3),
    ) else {
        return out;
    };
    let Ok(mut inside) = CroppedImageMut::new(
        &mut target,
        columns.first,
        rows.first,
        columns.count,
        rows.count,
    ) else {
        return out;
    };
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(columns.from, rows.from, columns.length, rows.length);
    // Sizes and the crop box are within bounds by construction, so this cannot fail.
    let resized = Resizer::new().resize(&source, &mut inside, &options);
    debug_assert!(resized.is_ok(), "{resized:?}");
    out
}

/// Along one axis: the output pixels whose source lies inside the frame, and that source.
#[derive(Debug, PartialEq)]
struct Span {
    /// First output pixel and how many.
    first: u32,
    count: u32,
    /// Where they come from, in frame pixels.
    from: f64,
    length: f64,
}

impl Span {
    /// Maps the region `start..end` of a frame axis `size` long onto `out` output pixels;
    /// `None` when no whole output pixel falls inside the frame.
    fn inside(start: f32, end: f32, size: u32, out: u32) -> Option<Span> {
        let (start, end) = (f64::from(start), f64::from(end));
        if start.is_nan() || end.is_nan() || end <= start || out == 0 || size == 0 {
            return None;
        }
        let step = (end - start) / f64::from(out);
        // Output pixels are whole: keep those entirely inside the frame.
        let first = (-start / step).ceil().clamp(0.0, f64::from(out));
        let last = ((f64::from(size) - start) / step)
            .floor()
            .clamp(0.0, f64::from(out));
        if last <= first {
            return None;
        }
        let from = (start + first * step).max(0.0);
        let length = ((last - first) * step).min(f64::from(size) - from);
        Some(Span {
            first: first as u32,
            count: (last - first) as u32,
            from,
            length,
        })
    }
}

/// How a frame is fitted to a model's input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fit {
    /// The whole frame, stretched to the input's aspect.
    Stretch,
    /// The whole frame, aspect kept, centred; the rest padded (NanoDet's demo).
    Letterbox,
    /// The whole frame, aspect kept, at the top left; the right or bottom padded (the
    /// original DeepLab graph).
    PadBottomRight,
    /// The middle of the frame at the input's aspect; the rest cut off.
    CentreCrop,
}

impl Fit {
    pub fn parse(text: &str) -> anyhow::Result<Fit> {
        match text {
            "" | "stretch" => Ok(Fit::Stretch),
            "letterbox" => Ok(Fit::Letterbox),
            "pad-bottom-right" => Ok(Fit::PadBottomRight),
            "centre-crop" => Ok(Fit::CentreCrop),
            _ => anyhow::bail!(
                "fit {text:?} is not stretch, letterbox, pad-bottom-right or centre-crop"
            ),
        }
    }

    /// The part of a `frame` (width, height) that an `input` (width, height) shows:
    /// x1, y1, x2, y2 in frame pixels, reaching outside the frame where it is padded.
    pub fn region(self, frame: (u32, u32), input: (u32, u32)) -> [f32; 4] {
        let (fw, fh) = (frame.0 as f32, frame.1 as f32);
        let (iw, ih) = (input.0 as f32, input.1 as f32);
        // Frame pixels per input pixel, the same on both axes when the aspect is kept.
        let scale = match self {
            Fit::Stretch => return [0.0, 0.0, fw, fh],
            Fit::Letterbox | Fit::PadBottomRight => (fw / iw).max(fh / ih),
            Fit::CentreCrop => (fw / iw).min(fh / ih),
        };
        let (w, h) = (iw * scale, ih * scale);
        match self {
            Fit::PadBottomRight => [0.0, 0.0, w, h],
            _ => {
                let (x, y) = ((fw - w) / 2.0, (fh - h) / 2.0);
                [x, y, x + w, y + h]
            }
        }
    }
}

/// Where a model's input came from in the frame: maps input coordinates back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region(pub [f32; 4]);

impl Region {
    /// Frame pixels of the point at (x, y) given as fractions of the input's width and height.
    pub fn point(&self, x: f32, y: f32) -> [f32; 2] {
        let [x1, y1, x2, y2] = self.0;
        [x1 + x * (x2 - x1), y1 + y * (y2 - y1)]
    }
}

/// How a model lays out its input tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    /// [1, 3, H, W]: one plane per channel.
    Nchw,
    /// [1, H, W, 3]: channels interleaved.
    Nhwc,
}

impl Layout {
    pub fn parse(text: &str) -> anyhow::Result<Layout> {
        match text {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            _ => anyhow::bail!("layout {text:?} is not a picture layout (nchw or nhwc)"),
        }
    }

    /// Width and height of a picture input of this layout and `shape`.
    pub fn size_of(self, shape: &[usize]) -> anyhow::Result<(u32, u32)> {
        let (h, w, c) = match (self, shape) {
            (Layout::Nchw, &[1, c, h, w]) => (h, w, c),
            (Layout::Nhwc, &[1, h, w, c]) => (h, w, c),
            _ => anyhow::bail!("input shape {shape:?} is not a single {self:?} picture"),
        };
        anyhow::ensure!(c == 3, "input shape {shape:?} does not have 3 channels");
        Ok((u32::try_from(w)?, u32::try_from(h)?))
    }

    fn shape(self, width: u32, height: u32) -> Vec<usize> {
        let (w, h) = (width as usize, height as usize);
        match self {
            Layout::Nchw => vec![1, 3, h, w],
            Layout::Nhwc => vec![1, h, w, 3],
        }
    }
}

/// Packs `picture` into a tensor: f32 as (pixel - mean) / std per channel, i32 as the raw
/// pixel values; shape [1,3,H,W] or [1,H,W,3].
pub fn to_tensor(
    picture: &Frame,
    layout: Layout,
    dtype: DType,
    mean: [f32; 3],
    std: [f32; 3],
) -> Tensor {
    let shape = layout.shape(picture.width, picture.height);
    let data = match dtype {
        DType::F32 => {
            // 256 values a channel: a table lookup is exact and cheaper than the arithmetic.
            let table: [[f32; 256]; 3] =
                std::array::from_fn(|c| std::array::from_fn(|p| (p as f32 - mean[c]) / std[c]));
            TensorData::F32(pack(picture, layout, |c, p| table[c][p as usize]))
        }
        DType::I32 => TensorData::I32(pack(picture, layout, |_, p| i32::from(p))),
    };
    Tensor { shape, data }
}

/// One pass over the pixels, writing `value(channel, pixel)` in `layout` order.
fn pack<T: Copy + Default>(
    picture: &Frame,
    layout: Layout,
    value: impl Fn(usize, u8) -> T,
) -> Vec<T> {
    let mut out = vec![T::default(); picture.rgb.len()];
    match layout {
        Layout::Nhwc => {
            for (i, (o, &p)) in out.iter_mut().zip(&picture.rgb).enumerate() {
                *o = value(i % 3, p);
            }
        }
        Layout::Nchw => {
            let plane = picture.rgb.len() / 3;
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (((pixel, r), g), b) in picture.rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
                *r = value(0, pixel[0]);
                *g = value(1, pixel[1]);
                *b = value(2, pixel[2]);
            }
        }
    }
    out
}

/// Everything a picture model needs to turn a frame into its input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub dtype: DType,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub fit: Fit,
    /// The grey level of padding (Letterbox, PadBottomRight), before normalisation.
    pub pad: u8,
}

impl InputSpec {
    /// The input of a catalog model.
    pub fn of(entry: &Entry) -> anyhow::Result<InputSpec> {
        let layout = Layout::parse(&entry.layout)?;
        let (width, height) = layout.size_of(&entry.input_shape)?;
        let dtype = match entry.dtype.as_str() {
            "f32" => DType::F32,
            "i32" => DType::I32,
            other => anyhow::bail!("{}: dtype {other:?} is not f32 or i32", entry.name),
        };
        anyhow::ensure!(
            (0.0..=255.0).contains(&entry.pad_value),
            "{}: pad_value {} is not a pixel value (0 to 255)",
            entry.name,
            entry.pad_value
        );
        Ok(InputSpec {
            width,
            height,
            layout,
            dtype,
            mean: entry.mean,
            std: entry.std,
            fit: Fit::parse(&entry.fit).with_context(|| entry.name.clone())?,
            pad: entry.pad_value.round() as u8,
        })
    }

    /// An input that stretches the whole frame (the jetson-inference conventions).
    pub fn stretched(
        (width, height): (u32, u32),
        layout: Layout,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> InputSpec {
        InputSpec {
            width,
            height,
            layout,
            dtype: DType::F32,
            mean,
            std,
            fit: Fit::Stretch,
            pad: 0,
        }
    }

    /// The tensor shape this input has.
    pub fn shape(&self) -> Vec<usize> {
        self.layout.shape(self.width, self.height)
    }

    /// The part of a frame of `size` (width, height) the input shows.
    pub fn region(&self, size: (u32, u32)) -> Region {
        Region(self.fit.region(size, (self.width, self.height)))
    }

    /// Runs `engine` on `frame` fitted to this input: written in place on the GPU where the
    /// engine reads its input there, else through a host tensor.
    pub fn run(&self, engine: &mut dyn Engine, frame: &Frame) -> anyhow::Result<Vec<Tensor>> {
        #[cfg(feature = "gpu")]
        if let Some(outputs) =
            engine.run_filled(&mut |gpu, input, stream| self.fill_from(gpu, frame, input, stream))
        {
            return outputs;
        }
        engine.run(&self.tensor(frame))
    }

    /// The frame fitted to the input size, normalised.
    pub fn tensor(&self, frame: &Frame) -> Tensor {
        let region = self.region((frame.width, frame.height));
        let picture = resize_region_padded(frame, region.0, self.width, self.height, self.pad);
        to_tensor(&picture, self.layout, self.dtype, self.mean, self.std)
    }
}

#[cfg(test)]
/// The input tensor of catalog model `entry` for `frame`: fitted to its size, normalised.
pub fn tensor_for(frame: &Frame, entry: &Entry) -> anyhow::Result<Tensor> {
    Ok(InputSpec::of(entry)?.tensor(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose pixel (x, y) is (x, y, x + y) (mod 256).
    fn gradient(width: u32, height: u32) -> Frame {
        let mut frame = Frame::new(width, height);
        for y in 0..height {
            for x in 0..width {
                let i = ((y * width + x) * 3) as usize;
                frame.rgb[i..i + 3].copy_from_slice(&[x as u8, y as u8, (x + y) as u8]);
            }
        }
        frame
    }

    #[test]
    fn resize_keeps_flat_colours_and_averages_when_halving() {
        let flat = Frame::from_rgb(7, 5, [10, 200, 30].repeat(35)).unwrap();
        let out = resize(&flat, 16, 3);
        assert_eq!((out.width, out.height), (16, 3));
        assert!(out.rgb.chunks(3).all(|p| p == [10, 200, 30]));
        // Halving a 0,1,2,3.. ramp with the widened triangle filter: each output pixel is
        // near the mean of the two it covers (PIL gives the same).
        let ramp = gradient(8, 2);
        let half = resize(&ramp, 4, 1);
        let reds: Vec<u8> = half.rgb.chunks(3).map(|p| p[0]).collect();
        for (got, want) in reds.iter().zip([0.5f32, 2.5, 4.5, 6.5]) {
            assert!((*got as f32 - want).abs() <= 1.0, "{reds:?}");
        }
    }

    #[test]
    fn resize_region_crops_and_pads_outside_with_black() {
        let frame = gradient(40, 30);
        // Inside: an exact 1:1 copy of the region.
        let copy = resize_region(&frame, [10.0, 5.0, 20.0, 15.0], 10, 10);
        assert_eq!(copy.pixel(0, 0), frame.pixel(10, 5));
        assert_eq!(copy.pixel(9, 9), frame.pixel(19, 14));
        // Half outside on the left and top: that half is black, the rest is the frame.
        let padded = resize_region(&frame, [-10.0, -10.0, 10.0, 10.0], 20, 20);
        assert_eq!(padded.pixel(9, 15), [0, 0, 0]);
        assert_eq!(padded.pixel(15, 9), [0, 0, 0]);
        assert_eq!(padded.pixel(10, 10), frame.pixel(0, 0));
        assert_eq!(padded.pixel(19, 19), frame.pixel(9, 9));
        // Wholly outside or empty: all black, no panic.
        for region in [
            [50.0, 50.0, 60.0, 60.0],
            [5.0, 5.0, 5.0, 9.0],
            [f32::NAN; 4],
        ] {
            let out = resize_region(&frame, region, 8, 8);
            assert!(out.rgb.iter().all(|&v| v == 0), "{region:?}");
        }
        assert_eq!(
            resize_region(&frame, [0.0, 0.0, 4.0, 4.0], 0, 3).rgb.len(),
            0
        );
    }

    #[test]
    fn spans_keep_whole_output_pixels_inside_the_frame() {
        let span = Span::inside(-10.0, 10.0, 30, 20).unwrap();
        assert_eq!(
            span,
            Span {
                first: 10,
                count: 10,
                from: 0.0,
                length: 10.0
            }
        );
        let past_end = Span::inside(20.0, 40.0, 30, 10).unwrap();
        assert_eq!((past_end.first, past_end.count), (0, 5));
        assert_eq!((past_end.from, past_end.length), (20.0, 10.0));
        assert!(Span::inside(30.0, 40.0, 30, 10).is_none());
    }

    #[test]
    fn tensors_are_normalised_in_either_layout() {
        let picture = gradient(3, 2);
        let mean = [1.0, 2.0, 3.0];
        let std = [2.0, 4.0, 0.5];
        let nchw = to_tensor(&picture, Layout::Nchw, DType::F32, mean, std);
        assert_eq!(nchw.shape, vec![1, 3, 2, 3]);
        let v = nchw.as_f32();
        // Pixel (2, 1) is (2, 1, 3): red plane, green plane, blue plane.
        assert_eq!(v[5], (2.0 - 1.0) / 2.0);
        assert_eq!(v[6 + 5], (1.0 - 2.0) / 4.0);
        assert_eq!(v[12 + 5], (3.0 - 3.0) / 0.5);
        let nhwc = to_tensor(&picture, Layout::Nhwc, DType::I32, mean, std);
        assert_eq!(nhwc.shape, vec![1, 2, 3, 3]);
        let TensorData::I32(raw) = &nhwc.data else {
            panic!("not i32")
        };
        assert_eq!(&raw[15..18], &[2, 1, 3]);
    }

    #[test]
    fn inputs_follow_the_catalog() {
        let catalog = super::super::catalog::Catalog::open(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models"
        )))
        .unwrap();
        let movenet = catalog.get("movenet-lightning").unwrap();
        let tensor = tensor_for(&gradient(320, 240), movenet).unwrap();
        assert_eq!(tensor.shape, movenet.input_shape);
        assert!(matches!(tensor.data, TensorData::I32(_)));
        let nanodet = InputSpec::of(catalog.get("nanodet").unwrap()).unwrap();
        assert_eq!((nanodet.width, nanodet.height), (416, 416));
        assert_eq!(nanodet.shape(), vec![1, 3, 416, 416]);
        assert!(InputSpec::of(catalog.get("i3d-kinetics-400").unwrap()).is_err());
        assert!(Layout::parse("nchw").is_ok() && Layout::parse("chw").is_err());
    }
}
