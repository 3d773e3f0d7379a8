//! Semantic segmentation (section "segmentation"): DeepLabV3 (21 Pascal VOC classes) or
//! MediaPipe selfie segmentation (background / person) from the catalog, or a user's
//! jetson-inference FCN-ResNet18 file with segNet's convention. The class scores are
//! upsampled over the part of the input that shows the frame (bilinearly for "linear", the
//! nearest cell for "point") and the best class taken at each pixel; the class map is drawn
//! as class colours over the frame ("overlay") or alone ("mask"). Where the model takes its
//! input on the GPU, the class map is made there too (`gpu`).

#[cfg(feature = "gpu")]
mod gpu;

use super::jetson;
use super::layer::{ClassIds, Layer};
use super::mask::{self, Alignment, Filter};
use super::preprocess::{InputSpec, Layout};
use super::scores::argmax;
use super::{catalog, custom_layers, overlay, resolve, score_json, Context, Network, Task};
use crate::engine::{Engine, Io, Tensor};
use crate::media::Frame;
use crate::settings::{typed::Model, Settings};
use anyhow::Context as _;
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    let model = &settings.segmentation.model;
    let task = match resolve(&model.network, ctx.catalog)? {
        Network::Catalog(entry, _) => catalog_model(entry, model, ctx)?,
        Network::File(path) => fcn(&path, model, ctx)?,
    };
    Ok(Box::new(task))
}

/// A catalog model: its entry gives the input, the grid's alignment (`align_corners`) and
/// the colours (`palette`).
fn catalog_model(
    entry: &catalog::Entry,
    model: &Model,
    ctx: &Context,
) -> anyhow::Result<Segmentation> {
    anyhow::ensure!(
        entry.task == "segmentation",
        "{:?} is a {} model, not a segmentation model",
        entry.name,
        entry.task
    );
    let input = InputSpec::of(entry)?;
    let (name, outputs) = (entry.input.clone(), entry.outputs.clone());
    let path = ctx.catalog.path_of(entry);
    let engine = ctx.load_picture_model(&path, &input, (name, outputs), Io::FramesDecodedOnGpu)?;
    let labels = Network::Catalog(entry, path).labels(model, ctx.catalog)?;
    let alignment = match entry.extra.get("align_corners").and_then(|a| a.as_bool()) {
        Some(true) => Alignment::Corners,
        _ => Alignment::Centres,
    };
    let colors = match entry.extra.get("palette").and_then(|p| p.as_str()) {
        None => Vec::new(),
        Some("pascal-voc") => (0..labels.len()).map(pascal_voc_color).collect(),
        Some(other) => anyhow::bail!("{}: palette {other:?} is unknown", entry.name),
    };
    Ok(Segmentation::new(
        engine,
        input,
        alignment,
        Classes { labels, colors },
    ))
}

/// jetson-inference's FCN-ResNet18 convention: input "input_0" NCHW at the size the file
/// declares, ImageNet normalisation; output "output_0" [1,C,h,w] class scores. As segNet
/// finds them, the class names are in `classes.txt` beside the model (or the section's
/// `labels` file), their colours in `colors.txt` beside that (or beside the model).
fn fcn(path: &Path, model: &Model, ctx: &Context) -> anyhow::Result<Segmentation> {
    let (name, outputs) = custom_layers(model, "", &[]);
    let input = jetson::imagenet_input(path, &name, &[1, 3, 320, 320])?;
    let engine = ctx.load_picture_model(path, &input, (name, outputs), Io::FramesDecodedOnGpu)?;
    let classes_file = match model.labels.trim() {
        "" => jetson::beside(path, "classes.txt"),
        file => Some(PathBuf::from(file)),
    };
    let labels = match &classes_file {
        Some(file) => catalog::read_labels(file)?,
        None => Vec::new(),
    };
    let colors = match classes_file
        .and_then(|file| jetson::beside(&file, "colors.txt"))
        .or_else(|| jetson::beside(path, "colors.txt"))
    {
        Some(file) => read_colors(&file)?,
        None => Vec::new(),
    };
    Ok(Segmentation::new(
        engine,
        input,
        Alignment::Centres,
        Classes { labels, colors },
    ))
}

/// A class's colour; `alpha` when colors.txt gives one other than 255, which then holds
/// in overlay mode instead of `overlay_alpha` (segNet's rule).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClassColor {
    rgb: [u8; 3],
    alpha: Option<u8>,
}

/// The Pascal VOC colour map (bits of the class number spread over r, g, b), with the
/// background (class 0) clear so that the overlay shows only what was found.
fn pascal_voc_color(id: usize) -> ClassColor {
    let mut rgb = [0u8; 3];
    for bit in 0..8 {
        for (channel, value) in rgb.iter_mut().enumerate() {
            *value |= (((id >> (3 * bit + channel)) & 1) as u8) << (7 - bit);
        }
    }
    ClassColor {
        rgb,
        alpha: (id == 0).then_some(0),
    }
}

/// Reads jetson's colors.txt: "r g b" or "r g b a" a line.
fn read_colors(path: &Path) -> anyhow::Result<Vec<ClassColor>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read colours {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let values: Vec<u8> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()
                .filter(|v: &Vec<u8>| v.len() == 3 || v.len() == 4)
                .with_context(|| format!("{}:{}: not \"r g b [a]\"", path.display(), n + 1))?;
            Ok(ClassColor {
                rgb: [values[0], values[1], values[2]],
                alpha: values.get(3).copied().filter(|&a| a != 255),
            })
        })
        .collect()
}

/// Class names and colours.
struct Classes {
    labels: Vec<String>,
    colors: Vec<ClassColor>,
}

impl Classes {
    /// Class `id`'s colour: the colors file's, else a distinct colour, with a clear
    /// background (a class named "background") so the overlay shows only what was found.
    fn color(&self, id: usize) -> ClassColor {
        self.colors.get(id).copied().unwrap_or_else(|| {
            if self.labels.get(id).is_some_and(|l| l == "background") {
                ClassColor {
                    rgb: [0, 0, 0],
                    alpha: Some(0),
                }
            } else {
                ClassColor {
                    rgb: overlay::class_color(id),
                    alpha: None,
                }
            }
        })
    }
}

/// A model's class scores, cell after cell: `classes` values each.
#[derive(Debug, Clone, PartialEq)]
struct Scores {
    width: usize,
    height: usize,
    classes: usize,
    values: Vec<f32>,
}

impl Scores {
    /// From an output in `layout` ([1,C,H,W] or [1,H,W,C]). One channel is a person
    /// probability p (selfie), taken as the scores (1 - p, p): person above one half.
    fn of(output: &Tensor, layout: Layout) -> anyhow::Result<Scores> {
        let (classes, height, width) = grid_of(&output.shape, layout)?;
        let data = output.as_f32();
        let plane = width * height;
        let values = match (classes, layout) {
            (1, _) => data.iter().flat_map(|&p| [1.0 - p, p]).collect(),
            (_, Layout::Nhwc) => data.into_owned(),
            (_, Layout::Nchw) => (0..plane)
                .flat_map(|i| (0..classes).map(move |c| (c, i)))
                .map(|(c, i)| data[c * plane + i])
                .collect(),
        };
        Ok(Scores {
            width,
            height,
            classes: classes.max(2),
            values,
        })
    }
}

/// (classes, height, width) of class scores of `shape` in `layout` ([1,C,H,W] or
/// [1,H,W,C]); one class is a person probability.
fn grid_of(shape: &[usize], layout: Layout) -> anyhow::Result<(usize, usize, usize)> {
    let (classes, height, width) = match (layout, shape) {
        (Layout::Nhwc, &[1, h, w, 1]) | (Layout::Nchw, &[1, 1, h, w]) => (1, h, w),
        (Layout::Nchw, &[1, c, h, w]) | (Layout::Nhwc, &[1, h, w, c]) => (c, h, w),
        (_, shape) => {
            anyhow::bail!("class scores of shape {shape:?} are not a {layout:?} grid")
        }
    };
    anyhow::ensure!(
        classes <= 256 && width > 0 && height > 0,
        "class scores of shape {shape:?}: 1 to 256 classes over a grid are supported"
    );
    Ok((classes, height, width))
}

/// Where each pixel of a class map samples a `grid` (width, height) of scores: the map's
/// columns and rows. The map covers the part of `input` that shows a frame of `size`.
fn map_taps(
    grid: (usize, usize),
    (input, alignment): (&InputSpec, Alignment),
    size: (u32, u32),
    filter: Filter,
) -> (Vec<mask::Tap>, Vec<mask::Tap>) {
    let [x1, y1, x2, y2] = input.region(size).0;
    // The frame's first pixel and extent along one axis, in input pixels (past the
    // input's edges when it was cropped; such a frame is not made of crumbs).
    let span = |start: f32, end: f32, frame: u32, input: u32| {
        let per_frame_pixel = input as f32 / (end - start);
        let first = -start * per_frame_pixel;
        let count = (frame as f32 * per_frame_pixel).round().max(1.0) as usize;
        (first, count.min(4 * input as usize))
    };
    let columns = span(x1, x2, size.0, input.width);
    let rows = span(y1, y2, size.1, input.height);
    (
        mask::input_taps(columns, input.width as usize, grid.0, alignment, filter),
        mask::input_taps(rows, input.height as usize, grid.1, alignment, filter),
    )
}

/// The class of every input pixel that shows the frame, row after row: the map covers the
/// frame exactly (padding is no part of it), at the input's resolution.
#[derive(Debug, Clone, PartialEq)]
struct ClassMap {
    width: usize,
    height: usize,
    ids: Vec<u8>,
}

impl ClassMap {
    /// The best class at each pixel of the scores upsampled over the input, within the
    /// part of it that shows a frame of `size`.
    fn of(
        scores: &Scores,
        (input, alignment): (&InputSpec, Alignment),
        size: (u32, u32),
        filter: Filter,
    ) -> ClassMap {
        let grid = (scores.width, scores.height);
        let (columns, rows) = map_taps(grid, (input, alignment), size, filter);
        let (width, height) = (columns.len(), rows.len());
        let c = scores.classes;
        let row_len = scores.width * c;
        let row = |r: usize| &scores.values[r * row_len..(r + 1) * row_len];
        // The scores blended between the two grid rows a map row falls between.
        let mut line = vec![0.0; row_len];
        let mut ids = Vec::with_capacity(width * height);
        for tap in &rows {
            for ((out, a), b) in line.iter_mut().zip(row(tap.low)).zip(row(tap.high)) {
                *out = a + (b - a) * tap.weight;
            }
            for column in &columns {
                let (a, b) = (&line[column.low * c..][..c], &line[column.high * c..][..c]);
                let blended = a.iter().zip(b).map(|(a, b)| a + (b - a) * column.weight);
                ids.push(argmax(blended).map_or(0, |(id, _)| id as u8));
            }
        }
        ClassMap { width, height, ids }
    }

    /// Each class present and its share of the frame.
    fn shares(&self) -> Vec<(usize, f32)> {
        let mut counts = [0usize; 256];
        for &id in &self.ids {
            counts[usize::from(id)] += 1;
        }
        let total = self.ids.len().max(1) as f32;
        (0..256)
            .filter(|&id| counts[id] > 0)
            .map(|id| (id, counts[id] as f32 / total))
            .collect()
    }
}

struct Segmentation {
    engine: Box<dyn Engine>,
    input: InputSpec,
    alignment: Alignment,
    classes: Classes,
    map: Option<ClassMap>,
    /// Whether the class map is made on the GPU: until that fails once (logged), when the
    /// host makes it from then on.
    #[cfg(feature = "gpu")]
    on_gpu: bool,
    /// The class-map kernel's taps and map buffer on the GPU, for the last frame size.
    #[cfg(feature = "gpu")]
    map_on_gpu: Option<gpu::MapBuffers>,
}

impl Segmentation {
    fn new(
        engine: Box<dyn Engine>,
        input: InputSpec,
        alignment: Alignment,
        classes: Classes,
    ) -> Segmentation {
        Segmentation {
            engine,
            input,
            alignment,
            classes,
            map: None,
            #[cfg(feature = "gpu")]
            on_gpu: true,
            #[cfg(feature = "gpu")]
            map_on_gpu: None,
        }
    }

    /// Premultiplied colour and opacity of each class up to the largest id in `map`, so
    /// that linear filtering blends colours and opacities alike. A mask is opaque.
    fn palette(&self, map: &ClassMap, mask_only: bool, overlay_alpha: u8) -> Vec<[f32; 4]> {
        let top = map.ids.iter().copied().max().map_or(0, usize::from);
        (0..=top)
            .map(|id| {
                let color = self.classes.color(id);
                let alpha = match (mask_only, color.alpha) {
                    (true, _) => 255,
                    (false, Some(alpha)) => alpha,
                    (false, None) => overlay_alpha,
                };
                let a = f32::from(alpha) / 255.0;
                let [r, g, b] = color.rgb.map(|c| f32::from(c) * a);
                [r, g, b, a]
            })
            .collect()
    }
}

impl Task for Segmentation {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let filter = Filter::parse(&settings.segmentation.filter_mode);
        #[cfg(feature = "gpu")]
        if self.on_gpu {
            match self.class_map_on_gpu(frame, filter) {
                Some(Ok(map)) => {
                    self.map = Some(map);
                    return Ok(());
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        "segmentation: the class map is made on the host from now on: {e:#}"
                    )
                }
                None => {}
            }
            self.on_gpu = false;
        }
        // A host tensor: an engine whose outputs are bound on the GPU runs one all the same.
        let outputs = self.engine.run(&self.input.tensor(frame))?;
        let output = outputs.first().context("the model gave no output")?;
        // The output's layout follows the input's (TensorFlow models are NHWC throughout).
        let scores = Scores::of(output, self.input.layout)?;
        self.map = Some(ClassMap::of(
            &scores,
            (&self.input, self.alignment),
            (frame.width, frame.height),
            filter,
        ));
        Ok(())
    }

    fn layer(&self, settings: &Settings) -> Option<Layer<'_>> {
        let map = self.map.as_ref()?;
        let s = &settings.segmentation;
        Some(Layer::Tint {
            map: ClassIds {
                width: map.width,
                height: map.height,
                ids: &map.ids,
            },
            palette: self.palette(map, s.visualize == "mask", s.overlay_alpha),
            filter: Filter::parse(&s.filter_mode),
        })
    }

    fn result(&self) -> Json {
        let Some(map) = &self.map else {
            return Json::Null;
        };
        // The colours go with the shares so that the page can draw a legend of the classes
        // present.
        let (mut classes, mut colors) = (Map::new(), Map::new());
        for (id, share) in map.shares() {
            let label = super::label_of(&self.classes.labels, id).into_owned();
            let [r, g, b] = self.classes.color(id).rgb;
            colors.insert(label.clone(), format!("#{r:02x}{g:02x}{b:02x}").into());
            classes.insert(label, score_json(share));
        }
        serde_json::json!({ "classes": classes, "colors": colors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::preprocess::Fit;
    use crate::vision::testing::{self, Env};

    /// The catalog model `name` with the default settings.
    fn catalog(env: &Env, name: &str) -> Segmentation {
        let entry = env.catalog.get(name).unwrap();
        catalog_model(entry, &env.settings.segmentation.model, &env.context()).unwrap()
    }

    fn selfie(env: &Env) -> Segmentation {
        catalog(env, "selfie-segmentation")
    }

    #[test]
    fn the_person_mask_covers_the_person_like_the_reference() {
        let env = Env::new();
        let mut task = selfie(&env);
        let picture = testing::picture("person");
        task.process(&picture, &env.settings).unwrap();
        let map = task.map.as_ref().unwrap();
        let (sx, sy) = (map.width as f32 / 640.0, map.height as f32 / 424.0);
        let rows = (95.0 * sy).round() as usize..(385.0 * sy).round() as usize;
        let columns = (180.0 * sx).round() as usize..(290.0 * sx).round() as usize;
        let person = |r: usize, c: usize| map.ids[r * map.width + c] == 1;
        let total = map.ids.iter().filter(|&&id| id == 1).count() as f64;
        let in_box = rows
            .clone()
            .flat_map(|r| columns.clone().map(move |c| (r, c)))
            .filter(|&(r, c)| person(r, c))
            .count() as f64;
        let box_cells = (rows.len() * columns.len()) as f64;
        let want = &testing::reference()["segmentation"]["person"];
        let near = |got: f64, key: &str, tolerance: f64| {
            let want = want[key].as_f64().unwrap();
            assert!((got - want).abs() < tolerance, "{key}: {got} vs {want}");
        };
        near(total / map.ids.len() as f64, "person_fraction", 0.005);
        near(in_box / total, "share_inside_person_box", 0.01);
        near(in_box / box_cells, "person_box_covered", 0.02);
        let result = task.result();
        let person_share = result["classes"]["person"].as_f64().unwrap();
        assert!(
            (person_share - total / map.ids.len() as f64).abs() < 1e-3,
            "{result}"
        );
        assert!(result["classes"]["background"].as_f64().unwrap() > 0.9);
    }

    #[test]
    fn overlay_tints_the_person_only_and_mask_replaces_the_frame() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        let mut task = selfie(&env);
        let picture = testing::picture("person");
        task.process(&picture, &settings).unwrap();
        let mut overlaid = picture.clone();
        crate::vision::draw(&[&task], &mut overlaid, &settings);
        testing::save_annotated(&overlaid, "segmentation-overlay-person.png");
        // The background (horse at the right, sky at the top left) keeps its pixels.
        assert_eq!(overlaid.pixel(500, 250), picture.pixel(500, 250));
        assert_eq!(overlaid.pixel(20, 20), picture.pixel(20, 20));
        // The person's chest, about (230, 180), is tinted with the person colour.
        let person = overlay::class_color(1);
        let mut tinted = picture.pixel(230, 180);
        overlay::blend(&mut tinted, person, settings.segmentation.overlay_alpha);
        let got = overlaid.pixel(230, 180);
        assert!(
            got.iter().zip(tinted).all(|(&g, t)| g.abs_diff(t) <= 2),
            "{got:?} vs {tinted:?}"
        );

        settings.segmentation.visualize = "mask".into();
        settings.segmentation.filter_mode = "point".into();
        let mut masked = picture.clone();
        crate::vision::draw(&[&task], &mut masked, &settings);
        testing::save_annotated(&masked, "segmentation-mask-person.png");
        assert_eq!(masked.pixel(500, 250), [0, 0, 0]);
        assert_eq!(masked.pixel(230, 180), person);
        // Point filtering leaves only the two class colours.
        assert!(masked
            .rgb
            .chunks_exact(3)
            .all(|p| p == [0, 0, 0] || p == person));
    }

    /// A 300x200 frame: red left half, green bottom right quarter, black top right.
    fn quarters() -> Frame {
        let mut frame = Frame::new(300, 200);
        for (i, pixel) in frame.rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % 300, i / 300);
            if x < 150 {
                pixel.copy_from_slice(&[255, 0, 0]);
            } else if y >= 100 {
                pixel.copy_from_slice(&[0, 255, 0]);
            }
        }
        frame
    }

    /// tests/data/jetson/fcn-resnet18 (tools/make-test-models): 64x96 input, 8x8 cells,
    /// classes background / red / green by colour, with classes.txt and colors.txt.
    #[test]
    fn decodes_a_jetson_fcn_file_end_to_end() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.segmentation.model.network =
            testing::data("jetson/fcn-resnet18/fcn_resnet18.onnx");
        let mut task = build(&settings, &env.context()).unwrap();
        let frame = quarters();
        task.process(&frame, &settings).unwrap();
        let result = task.result();
        let share = |label: &str| result["classes"][label].as_f64().unwrap();
        // The scores are blended between cells before the best class is taken, so a
        // boundary lies where the blended scores cross: within a pixel or two of the
        // quarters' edges at this 64x96 input.
        assert!((share("red") - 0.5).abs() < 0.02, "{result}");
        assert!((share("green") - 0.25).abs() < 0.02, "{result}");
        assert!((share("background") - 0.25).abs() < 0.02, "{result}");
        // colors.txt: background "0 0 0 0" stays clear in overlay mode; red at overlay_alpha
        // (drawn on white to see both).
        let mut drawn = Frame::from_rgb(300, 200, vec![255; 300 * 200 * 3]).unwrap();
        crate::vision::draw(&[task.as_ref()], &mut drawn, &settings);
        assert_eq!(drawn.pixel(280, 20), [255, 255, 255]);
        let mut tinted = [255, 255, 255];
        overlay::blend(
            &mut tinted,
            [255, 0, 0],
            settings.segmentation.overlay_alpha,
        );
        let got = drawn.pixel(50, 100);
        assert!(
            got.iter().zip(tinted).all(|(&g, t)| g.abs_diff(t) <= 1),
            "{got:?}"
        );
        settings.segmentation.visualize = "mask".into();
        let mut drawn = Frame::new(300, 200);
        crate::vision::draw(&[task.as_ref()], &mut drawn, &settings);
        assert_eq!(drawn.pixel(250, 180), [0, 255, 0]);
        // Linear filtering blends where classes meet (about x = 150 at y = 150: red |
        // green): colours there that are no class's own.
        let own = [[255, 0, 0], [0, 255, 0], [0, 0, 0]];
        let blended = (140..160)
            .map(|x| drawn.pixel(x, 150))
            .filter(|p| !own.contains(p))
            .count();
        assert!(
            blended > 0,
            "{:?}",
            (140..160).map(|x| drawn.pixel(x, 150)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_padded_input_maps_back_to_the_frame_alone() {
        // A 60x30 frame padded at the bottom into a 9x9 input: the frame is its top 9x5
        // pixels (4.5 rounded up). Grid 3x3 (aligned corners: pixels 0, 4, 8); class 1 on
        // the right column, class 2 on the bottom row, which lies in the padding.
        let input = InputSpec {
            fit: Fit::PadBottomRight,
            ..InputSpec::stretched((9, 9), Layout::Nhwc, [0.0; 3], [1.0; 3])
        };
        let mut values = Vec::new();
        for row in 0..3 {
            for column in 0..3 {
                let class = if row == 2 {
                    2
                } else {
                    usize::from(column == 2)
                };
                values.extend((0..3).map(|c| if c == class { 1.0 } else { 0.0 }));
            }
        }
        let scores = Scores::of(&Tensor::f32(vec![1, 3, 3, 3], values), Layout::Nhwc).unwrap();
        let map = ClassMap::of(
            &scores,
            (&input, Alignment::Corners),
            (60, 30),
            Filter::Point,
        );
        assert_eq!((map.width, map.height), (9, 5));
        // Nearest: pixels 6..8 of a row are cell 2 (class 1), rows 0..4 cells 0 and 1.
        assert_eq!(&map.ids[..9], &[0, 0, 0, 0, 0, 0, 1, 1, 1]);
        assert!(map.ids.iter().all(|&id| id != 2), "{:?}", map.ids);
        assert!((map.shares()[1].1 - 3.0 / 9.0).abs() < 1e-6);
    }

    /// DeepLab's classes on `name`.jpg with the default settings, and the class map.
    fn deeplab_on(env: &Env, name: &str) -> (Json, ClassMap) {
        let mut task = catalog(env, &env.settings.segmentation.model.network);
        task.process(&testing::picture(name), &env.settings)
            .unwrap();
        (task.result(), task.map.unwrap())
    }

    /// A GPU path that fails loses one try, not the model: the host makes the same map.
    #[cfg(feature = "gpu")]
    #[test]
    fn a_failing_gpu_path_falls_back_to_the_host() {
        let env = Env::new();
        let entry = env.catalog.get("selfie-segmentation").unwrap();
        let model = &env.settings.segmentation.model;
        let mut failing = catalog_model(entry, model, &env.context_failing_on_gpu()).unwrap();
        let mut host = selfie(&env);
        let person = testing::picture("person");
        for _ in 0..2 {
            failing.process(&person, &env.settings).unwrap();
            assert!(!failing.on_gpu);
            host.process(&person, &env.settings).unwrap();
            assert_eq!(failing.map, host.map);
            assert_ne!(failing.result(), Json::Null);
        }
    }

    #[test]
    fn deeplab_finds_the_dog_bicycle_and_car_where_they_are() {
        let env = Env::new();
        assert_eq!(
            env.settings.segmentation.model.network,
            "deeplabv3-mnv2-pascal"
        );
        let (result, map) = deeplab_on(&env, "dog");
        eprintln!("dog.jpg: {result}");
        let reference = &testing::reference()["segmentation-voc"]["dog"];
        for wanted in ["dog", "bicycle", "car"] {
            let want = reference
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c[0] == wanted)
                .unwrap()[1]
                .as_f64()
                .unwrap();
            let got = result["classes"][wanted].as_f64().unwrap_or(0.0);
            assert!((got - want).abs() < 0.005, "{wanted}: {got} vs {want}");
        }
        // The dog's pixels lie in the lower left of the picture (the reference's region
        // is x 132..307, y 226..535 of 768x576), scaled to the map.
        let (sx, sy) = (768.0 / map.width as f32, 576.0 / map.height as f32);
        let dog: Vec<(f32, f32)> = (0..map.ids.len())
            .filter(|&i| map.ids[i] == 12)
            .map(|i| ((i % map.width) as f32 * sx, (i / map.width) as f32 * sy))
            .collect();
        let (xs, ys): (Vec<f32>, Vec<f32>) = dog.into_iter().unzip();
        let min = |v: &[f32]| v.iter().copied().fold(f32::MAX, f32::min);
        let max = |v: &[f32]| v.iter().copied().fold(f32::MIN, f32::max);
        let region = [min(&xs), min(&ys), max(&xs), max(&ys)];
        for (got, want) in region.iter().zip([132.0, 226.0, 307.0, 535.0]) {
            assert!((got - want).abs() < 12.0, "dog region {region:?}");
        }
        assert_eq!(result["colors"]["dog"], "#400080");
    }

    #[test]
    fn deeplab_labels_the_horses_the_bird_and_the_person() {
        let env = Env::new();
        for (picture, class) in [("horses", "horse"), ("eagle", "bird"), ("person", "person")] {
            let (result, _) = deeplab_on(&env, picture);
            let want = testing::reference()["segmentation-voc"][picture]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c[0] == class)
                .unwrap()[1]
                .as_f64()
                .unwrap();
            let got = result["classes"][class].as_f64().unwrap_or(0.0);
            assert!(
                (got - want).abs() < 0.005,
                "{picture}: {class} {got} vs {want}; {result}"
            );
        }
    }

    #[test]
    fn a_network_whose_output_is_no_class_grid_is_an_error() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        // A classifier's [1,1000] scores, given as the segmentation network.
        settings.segmentation.model.network = env
            .catalog
            .path_of(env.catalog.get("efficientnet-lite0").unwrap())
            .display()
            .to_string();
        let mut task = build(&settings, &env.context()).unwrap();
        let error = task
            .process(&testing::picture("dog"), &settings)
            .unwrap_err()
            .to_string();
        assert!(error.contains("[1, 1000]"), "{error}");
    }

    #[test]
    fn the_pascal_voc_palette() {
        assert_eq!(pascal_voc_color(0).alpha, Some(0));
        assert_eq!(pascal_voc_color(1).rgb, [128, 0, 0]);
        assert_eq!(pascal_voc_color(12).rgb, [64, 0, 128]); // dog
        assert_eq!(pascal_voc_color(15).rgb, [192, 128, 128]); // person
        assert_eq!(pascal_voc_color(15).alpha, None);
    }

    #[test]
    fn class_maps_from_scores_and_colour_files() {
        // Two classes over 1x3 cells, a 3x1 input: class 1 wins the middle cell.
        let input = InputSpec::stretched((3, 1), Layout::Nchw, [0.0; 3], [1.0; 3]);
        let nchw = Tensor::f32(vec![1, 2, 1, 3], vec![1.0, 0.0, 1.0, 0.0, 2.0, 0.5]);
        let scores = Scores::of(&nchw, Layout::Nchw).unwrap();
        let map = ClassMap::of(
            &scores,
            (&input, Alignment::Centres),
            (30, 10),
            Filter::Linear,
        );
        assert_eq!(map.ids, vec![0, 1, 0]);
        let shares = map.shares();
        assert_eq!(shares.len(), 2);
        assert!((shares[0].1 - 2.0 / 3.0).abs() < 1e-6);
        // The same scores interleaved (NHWC), and a person probability.
        let nhwc = Tensor::f32(vec![1, 1, 3, 2], vec![1.0, 0.0, 0.0, 2.0, 1.0, 0.5]);
        assert_eq!(Scores::of(&nhwc, Layout::Nhwc).unwrap(), scores);
        let probability = Tensor::f32(vec![1, 1, 3, 1], vec![0.2, 0.9, 0.5]);
        let person = Scores::of(&probability, Layout::Nhwc).unwrap();
        let map = ClassMap::of(&person, (&input, Alignment::Centres), (3, 1), Filter::Point);
        assert_eq!(map.ids, vec![0, 1, 0]);
        assert!(Scores::of(&Tensor::f32(vec![1, 6], vec![0.0; 6]), Layout::Nhwc).is_err());
        let colors =
            read_colors(Path::new(&testing::data("jetson/fcn-resnet18/colors.txt"))).unwrap();
        assert_eq!(
            colors[0],
            ClassColor {
                rgb: [0, 0, 0],
                alpha: Some(0)
            }
        );
        assert_eq!(
            colors[1],
            ClassColor {
                rgb: [255, 0, 0],
                alpha: None
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("colors.txt");
        std::fs::write(&bad, "1 2\n").unwrap();
        let error = read_colors(&bad).unwrap_err().to_string();
        assert!(error.contains("colors.txt:1"), "{error}");
    }
}
