//! Object detection: NanoDet (catalog) or a jetson-inference SSD-Mobilenet ONNX file, decoded
//! to boxes in frame pixels, NMS across classes, an optional IoU tracker, and detectNet's
//! overlay.

use super::preprocess::{InputSpec, Layout};
use super::tracker::{Rules, Tracker};
use super::{custom_layers, label_of, overlay, resolve, score_json, Context, Network, Task};
use crate::engine::{Engine, Io, Tensor};
use crate::media::Frame;
use crate::settings::Settings;
use anyhow::Context as _;
use serde_json::{json, Value as Json};

/// jetson-inference's SSD-Mobilenet convention for custom ONNX files (pytorch-ssd's export):
/// 300x300 RGB NCHW, (pixel - 127) / 128, softmax scores with class 0 the background.
const CUSTOM_INPUT: &str = "input_0";
const CUSTOM_OUTPUTS: [&str; 2] = ["scores", "boxes"];
const CUSTOM_SIZE: u32 = 300;
const CUSTOM_MEAN: f32 = 127.0;
const CUSTOM_STD: f32 = 128.0;

/// One object found in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub class_id: usize,
    pub confidence: f32,
    /// x1, y1, x2, y2 in frame pixels.
    pub rect: [f32; 4],
    /// The tracker's id, when tracking is on.
    pub track_id: Option<u64>,
}

/// How the model's outputs become boxes.
#[derive(Debug, Clone, PartialEq)]
enum Decoder {
    /// Outputs (cls, reg) per stride: sigmoid scores per cell, and per side a distribution
    /// over `bins` distances (GFL); boxes around cell centres, in input pixels.
    NanoDet { strides: Vec<u32>, bins: usize },
    /// Outputs scores [1,N,C] (softmax, class 0 background) and boxes [1,N,4] normalised.
    Ssd,
}

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    Ok(Box::new(Detector::load(settings, ctx)?))
}

pub struct Detector {
    engine: Box<dyn Engine>,
    input: InputSpec,
    decoder: Decoder,
    labels: Vec<String>,
    tracker: Tracker,
    detections: Vec<Detection>,
}

impl Detector {
    pub fn load(settings: &Settings, ctx: &Context) -> anyhow::Result<Detector> {
        let section = &settings.detection.model;
        let network = resolve(&section.network, ctx.catalog)?;
        let labels = network.labels(section, ctx.catalog)?;
        let (input, decoder, name, outputs, path) = match network {
            Network::Catalog(entry, path) => {
                let decoder = nanodet_decoder(&entry.extra)
                    .with_context(|| format!("catalog model {}", entry.name))?;
                let (name, outputs) = (entry.input.clone(), entry.outputs.clone());
                (InputSpec::of(entry)?, decoder, name, outputs, path)
            }
            Network::File(path) => {
                let input = InputSpec::stretched(
                    (CUSTOM_SIZE, CUSTOM_SIZE),
                    Layout::Nchw,
                    [CUSTOM_MEAN; 3],
                    [CUSTOM_STD; 3],
                );
                let (name, outputs) = custom_layers(section, CUSTOM_INPUT, &CUSTOM_OUTPUTS);
                (input, Decoder::Ssd, name, outputs, path)
            }
        };
        let engine = ctx.load_picture_model(&path, &input, (name, outputs), Io::Frames)?;
        Ok(Detector {
            engine,
            input,
            decoder,
            labels,
            tracker: Tracker::default(),
            detections: Vec::new(),
        })
    }

    #[cfg(test)]
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }

    /// The caption of `detection` for the overlay flags: "dog 47%", "dog", "47%" or none.
    fn caption(&self, detection: &Detection, flags: &[String]) -> Option<String> {
        let has = |flag: &str| flags.iter().any(|f| f == flag);
        let label = has("labels").then(|| label_of(&self.labels, detection.class_id));
        let confidence = has("conf").then(|| format!("{:.0}%", detection.confidence * 100.0));
        match (label, confidence) {
            (Some(label), Some(confidence)) => Some(format!("{label} {confidence}")),
            (Some(label), None) => Some(label.into_owned()),
            (None, confidence) => confidence,
        }
    }
}

/// The NanoDet decoder from a catalog entry's `strides` and `reg_max` keys.
fn nanodet_decoder(extra: &toml::Table) -> anyhow::Result<Decoder> {
    let strides = extra
        .get("strides")
        .and_then(|v| v.as_array())
        .context("no strides")?
        .iter()
        .map(|s| s.as_integer().and_then(|s| u32::try_from(s).ok()))
        .collect::<Option<Vec<u32>>>()
        .context("strides are not whole numbers")?;
    let reg_max = extra
        .get("reg_max")
        .and_then(|v| v.as_integer())
        .and_then(|v| usize::try_from(v).ok())
        .context("no reg_max")?;
    anyhow::ensure!(
        !strides.is_empty() && !strides.contains(&0),
        "strides {strides:?}"
    );
    Ok(Decoder::NanoDet {
        strides,
        bins: reg_max + 1,
    })
}

impl Decoder {
    /// Boxes scoring at least `threshold`, in pixels of a `frame` (width, height) that the
    /// `input` was fitted from.
    fn decode(
        &self,
        outputs: &[Tensor],
        input: &InputSpec,
        frame: (u32, u32),
        threshold: f32,
    ) -> anyhow::Result<Vec<Detection>> {
        let mut detections = match self {
            Decoder::NanoDet { strides, bins } => {
                decode_nanodet(outputs, strides, *bins, input, threshold)?
            }
            Decoder::Ssd => decode_ssd(outputs, threshold)?,
        };
        // Boxes come normalised over the input; edge cells predict past the picture, and
        // padding is no part of it: results and trackers see boxes clipped to the frame.
        let region = input.region(frame);
        let size = [frame.0 as f32, frame.1 as f32];
        for d in &mut detections {
            let [x1, y1, x2, y2] = d.rect;
            let (top_left, bottom_right) = (region.point(x1, y1), region.point(x2, y2));
            d.rect = [top_left[0], top_left[1], bottom_right[0], bottom_right[1]];
            for (i, v) in d.rect.iter_mut().enumerate() {
                *v = v.clamp(0.0, size[i % 2]);
            }
        }
        Ok(detections)
    }
}

fn decode_nanodet(
    outputs: &[Tensor],
    strides: &[u32],
    bins: usize,
    input: &InputSpec,
    threshold: f32,
) -> anyhow::Result<Vec<Detection>> {
    anyhow::ensure!(
        outputs.len() == 2 * strides.len(),
        "NanoDet gives a (cls, reg) pair per stride: {} outputs for {} strides",
        outputs.len(),
        strides.len()
    );
    let mut found = Vec::new();
    for (&stride, pair) in strides.iter().zip(outputs.chunks_exact(2)) {
        let columns = (input.width / stride) as usize;
        let cells = columns * (input.height / stride) as usize;
        let (cls, reg) = (pair[0].as_f32(), pair[1].as_f32());
        let classes = cls.len() / cells.max(1);
        anyhow::ensure!(
            cells > 0 && cls.len() == cells * classes && reg.len() == cells * 4 * bins,
            "stride {stride}: outputs {:?} and {:?} do not fit a {cells}-cell grid",
            pair[0].shape,
            pair[1].shape
        );
        for (cell, scores) in cls.chunks_exact(classes).enumerate() {
            let mut rect = None;
            for (class_id, &confidence) in scores.iter().enumerate() {
                if confidence < threshold {
                    continue;
                }
                // Most cells score nothing: decode a box only where one is kept.
                let rect = *rect.get_or_insert_with(|| {
                    let centre = [
                        ((cell % columns) as f32 + 0.5) * stride as f32,
                        ((cell / columns) as f32 + 0.5) * stride as f32,
                    ];
                    let sides = &reg[cell * 4 * bins..(cell + 1) * 4 * bins];
                    let unit = [1.0 / input.width as f32, 1.0 / input.height as f32];
                    distance_box(centre, sides, bins, stride as f32, unit)
                });
                found.push(Detection {
                    class_id,
                    confidence,
                    rect,
                    track_id: None,
                });
            }
        }
    }
    Ok(found)
}

/// A GFL box: for each side (left, top, right, bottom), the expected distance under the
/// softmax of its `bins` logits, times `stride`, from `centre`; then `scale`d.
fn distance_box(
    centre: [f32; 2],
    sides: &[f32],
    bins: usize,
    stride: f32,
    scale: [f32; 2],
) -> [f32; 4] {
    let mut distance = [0.0f32; 4];
    for (side, logits) in distance.iter_mut().zip(sides.chunks_exact(bins)) {
        *side = expected_bin(logits) * stride;
    }
    [
        (centre[0] - distance[0]) * scale[0],
        (centre[1] - distance[1]) * scale[1],
        (centre[0] + distance[2]) * scale[0],
        (centre[1] + distance[3]) * scale[1],
    ]
}

/// sum(k * softmax(logits)_k): the mean bin of a distribution given as logits.
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut total, mut weighted) = (0.0, 0.0);
    for (k, &logit) in logits.iter().enumerate() {
        let p = (logit - max).exp();
        total += p;
        weighted += p * k as f32;
    }
    weighted / total
}

/// SSD-Mobilenet: every prior and non-background class scoring at least `threshold`, its
/// box normalised over the input.
fn decode_ssd(outputs: &[Tensor], threshold: f32) -> anyhow::Result<Vec<Detection>> {
    let [scores, boxes] = outputs else {
        anyhow::bail!("SSD gives scores and boxes: {} outputs", outputs.len());
    };
    let classes = scores.shape.last().copied().unwrap_or(0);
    let (scores, boxes) = (scores.as_f32(), boxes.as_f32());
    anyhow::ensure!(
        classes > 1 && scores.len() / classes * 4 == boxes.len(),
        "SSD scores {:?} and boxes {:?} do not match",
        outputs[0].shape,
        outputs[1].shape
    );
    let mut found = Vec::new();
    for (prior, rect) in scores.chunks_exact(classes).zip(boxes.chunks_exact(4)) {
        for (class_id, &confidence) in prior.iter().enumerate().skip(1) {
            if confidence >= threshold {
                found.push(Detection {
                    class_id,
                    confidence,
                    rect: [rect[0], rect[1], rect[2], rect[3]],
                    track_id: None,
                });
            }
        }
    }
    Ok(found)
}

/// Where a `w` x `h` caption meant for (x, y) goes: moved down below the captions already
/// `placed` that it would cover (boxes of different classes on one object share a corner).
fn caption_spot(placed: &[[i32; 4]], x: i32, y: i32, w: i32, h: i32) -> [i32; 4] {
    let mut spot = [x, y, x.saturating_add(w), y.saturating_add(h)];
    // Each step moves it strictly down, so this ends within `placed.len()` steps.
    while let Some(below) = placed
        .iter()
        .find(|p| p[0] < spot[2] && spot[0] < p[2] && p[1] < spot[3] && spot[1] < p[3])
    {
        spot[1] = below[3];
        spot[3] = below[3].saturating_add(h);
    }
    spot
}

/// Intersection over union of two x1, y1, x2, y2 boxes (0 for empty ones).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

/// Greedy non-maximum suppression across classes: best first, a box goes when it overlaps a
/// kept box by more than `threshold` IoU, whatever their classes, so that one thing gets one
/// box (NanoDet's package code does this, and detectNet keeps the more confident of two
/// classes' overlapping boxes). Returns the kept ones, best first.
fn nms(mut found: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Detection> = Vec::with_capacity(found.len());
    for candidate in found {
        let suppressed = kept
            .iter()
            .any(|k| iou(&k.rect, &candidate.rect) > threshold);
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

impl Task for Detector {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let settings = &settings.detection;
        let outputs = self.input.run(&mut *self.engine, frame)?;
        let found = self.decoder.decode(
            &outputs,
            &self.input,
            (frame.width, frame.height),
            settings.confidence_threshold,
        )?;
        let found = nms(found, settings.clustering_threshold);
        self.detections = if settings.tracking_enabled {
            self.tracker.update(found, &Rules::of(settings))
        } else {
            // Tracks would be stale when tracking comes back on.
            self.tracker = Tracker::default();
            found
        };
        Ok(())
    }

    fn draw(&self, frame: &mut Frame, settings: &Settings) {
        let settings = &settings.detection;
        let flags = &settings.overlay;
        let has = |flag: &str| flags.iter().any(|f| f == flag);
        let thickness = overlay::scale_for(frame);
        for detection in &self.detections {
            let color = overlay::class_color(detection.class_id);
            let [x1, y1, x2, y2] = detection.rect.map(|v| v.round() as i32);
            if has("box") {
                overlay::fill_rect(frame, x1, y1, x2, y2, color, settings.overlay_alpha);
            }
            if has("box") || has("lines") {
                overlay::rect_outline(frame, x1, y1, x2, y2, color, thickness);
            }
        }
        // Captions after all boxes, so no fill covers them.
        let mut placed = Vec::with_capacity(self.detections.len());
        for detection in &self.detections {
            let Some(caption) = self.caption(detection, flags) else {
                continue;
            };
            let (w, h) = overlay::label_size(frame, &caption);
            // Inside the box's top-left corner, as detectNet puts it; kept on screen.
            let corner = detection.rect.map(|v| v.round().max(0.0) as i32);
            let spot = caption_spot(&placed, corner[0], corner[1], w as i32, h as i32);
            overlay::label(
                frame,
                spot[0],
                spot[1],
                &caption,
                overlay::class_color(detection.class_id),
            );
            placed.push(spot);
        }
    }

    fn result(&self) -> Json {
        let boxes = self.detections.iter().map(|d| {
            json!({
                "label": label_of(&self.labels, d.class_id),
                "class_id": d.class_id,
                "confidence": score_json(d.confidence),
                "box": d.rect.map(|v| (f64::from(v) * 10.0).round() / 10.0),
                "track_id": d.track_id,
            })
        });
        Json::Array(boxes.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::preprocess::Fit;
    use crate::vision::testing;

    fn detection(class_id: usize, confidence: f32, rect: [f32; 4]) -> Detection {
        Detection {
            class_id,
            confidence,
            rect,
            track_id: None,
        }
    }

    #[test]
    fn iou_and_nms_across_classes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[5.0, 0.0, 15.0, 10.0]), 50.0 / 150.0);
        assert_eq!(iou(&a, &[20.0, 0.0, 30.0, 10.0]), 0.0);
        assert_eq!(iou(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]), 0.0);
        let kept = nms(
            vec![
                detection(1, 0.5, [1.0, 0.0, 11.0, 10.0]),
                detection(1, 0.9, a),
                detection(2, 0.4, a),
                detection(2, 0.35, [20.0, 0.0, 30.0, 10.0]),
                detection(1, 0.3, [5.0, 0.0, 15.0, 10.0]),
            ],
            0.6,
        );
        // The 0.5 box overlaps the 0.9 one by 0.82, and so does the other class's 0.4 box
        // by 1: both gone. The box elsewhere and the 0.33 overlap stay, best first.
        let kept: Vec<(usize, f32)> = kept.iter().map(|d| (d.class_id, d.confidence)).collect();
        assert_eq!(kept, vec![(1, 0.9), (2, 0.35), (1, 0.3)]);
    }

    #[test]
    fn nanodet_decode_on_a_small_grid() {
        // A 32x32 input, one stride of 16 (a 2x2 grid), 2 classes, reg_max 2 (3 bins).
        let input = InputSpec::stretched((32, 32), Layout::Nchw, [0.0; 3], [1.0; 3]);
        let mut cls = vec![0.0; 4 * 2];
        cls[3 * 2 + 1] = 0.8; // cell 3 = (x 1, y 1), class 1
        cls[2] = 0.2; // cell 1, class 0: under the threshold
        let mut reg = vec![0.0; 4 * 4 * 3];
        // Cell 3: left and top bins equal (mean bin 1), right and bottom p = (3/4, 1/4, 0).
        let right = [3f32.ln(), 0.0, f32::NEG_INFINITY];
        reg[3 * 12 + 6..3 * 12 + 9].copy_from_slice(&right);
        reg[3 * 12 + 9..3 * 12 + 12].copy_from_slice(&right);
        let outputs = [
            Tensor::f32(vec![1, 4, 2], cls),
            Tensor::f32(vec![1, 4, 12], reg),
        ];
        let decoder = Decoder::NanoDet {
            strides: vec![16],
            bins: 3,
        };
        // The frame is 64x32: x doubles.
        let found = decoder.decode(&outputs, &input, (64, 32), 0.3).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].class_id, found[0].confidence), (1, 0.8));
        // Centre (24, 24); distances 16, 16, 0.25 * 16 = 4, 4.
        let want = [
            (24.0 - 16.0) * 2.0,
            24.0 - 16.0,
            (24.0 + 4.0) * 2.0,
            24.0 + 4.0,
        ];
        for (got, want) in found[0].rect.iter().zip(want) {
            assert!((got - want).abs() < 1e-4, "{:?}", found[0].rect);
        }
        assert!(decoder
            .decode(&outputs[..1], &input, (64, 32), 0.3)
            .is_err());
        // Letterboxed, the 64x32 frame is the middle of a 64x64 square: both axes double,
        // y starts 16 px above the frame; the bottom is clipped to it.
        let letterboxed = InputSpec {
            fit: Fit::Letterbox,
            ..input.clone()
        };
        let found = decoder
            .decode(&outputs, &letterboxed, (64, 32), 0.3)
            .unwrap();
        let want = [16.0, 0.0, 56.0, 32.0];
        for (got, want) in found[0].rect.iter().zip(want) {
            assert!((got - want).abs() < 1e-4, "{:?}", found[0].rect);
        }
        let nanodet = nanodet_decoder(&toml::toml! { strides = [8, 16] reg_max = 7 }).unwrap();
        assert_eq!(
            nanodet,
            Decoder::NanoDet {
                strides: vec![8, 16],
                bins: 8
            }
        );
        assert!(nanodet_decoder(&toml::toml! { strides = [8, 0] reg_max = 7 }).is_err());
    }

    #[test]
    fn captions_step_down_past_those_already_placed() {
        let placed = [[0, 0, 50, 10], [40, 10, 90, 20], [200, 0, 250, 10]];
        // Below the first, which puts it on the second: below that.
        assert_eq!(caption_spot(&placed, 5, 2, 40, 10), [5, 20, 45, 30]);
        assert_eq!(caption_spot(&placed, 5, 2, 30, 10), [5, 10, 35, 20]);
        assert_eq!(caption_spot(&placed, 60, 5, 30, 10), [60, 20, 90, 30]);
        assert_eq!(caption_spot(&placed, 100, 0, 30, 10), [100, 0, 130, 10]);
    }

    #[test]
    fn ssd_decode_skips_the_background() {
        let scores = Tensor::f32(vec![1, 2, 3], vec![0.1, 0.2, 0.7, 0.9, 0.05, 0.05]);
        let boxes = Tensor::f32(vec![1, 2, 4], vec![0.1, 0.2, 0.5, 1.0, 0.0, 0.0, 1.0, 1.0]);
        let input = InputSpec::stretched((300, 300), Layout::Nchw, [0.0; 3], [1.0; 3]);
        let found = Decoder::Ssd
            .decode(&[scores, boxes], &input, (200, 100), 0.5)
            .unwrap();
        assert_eq!(found, vec![detection(2, 0.7, [20.0, 20.0, 100.0, 100.0])]);
    }

    /// `frame` moved right and down by `d` pixels, black where it came from.
    fn shifted(frame: &Frame, d: u32) -> Frame {
        let region = [
            -(d as f32),
            -(d as f32),
            (frame.width - d) as f32,
            (frame.height - d) as f32,
        ];
        crate::vision::preprocess::resize_region(frame, region, frame.width, frame.height)
    }

    #[test]
    fn finds_the_dog_bicycle_and_vehicle_of_the_reference() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        // The reference's thresholds.
        settings.detection.confidence_threshold = 0.3;
        settings.detection.clustering_threshold = 0.6;
        let mut detector = Detector::load(&settings, &env.context()).unwrap();
        let dog = testing::picture("dog");
        detector.process(&dog, &settings).unwrap();
        let result = detector.result();
        eprintln!("dog.jpg: {result}");
        let reference = testing::reference()["detection"]["dog"].clone();
        let reference = reference.as_array().unwrap();
        // The vehicle is a truck and, less surely, a car: one box, the truck's.
        for label in ["dog", "bicycle", "truck"] {
            let want = reference.iter().find(|r| r[0] == label).unwrap();
            let want_box: Vec<f32> = want[2]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let want_box = [want_box[0], want_box[1], want_box[2], want_box[3]];
            let got = detector
                .detections()
                .iter()
                .filter(|d| detector.labels[d.class_id] == label)
                .max_by(|a, b| iou(&a.rect, &want_box).total_cmp(&iou(&b.rect, &want_box)))
                .unwrap_or_else(|| panic!("no {label} in {result}"));
            let overlap = iou(&got.rect, &want_box);
            let score_gap = (f64::from(got.confidence) - want[1].as_f64().unwrap()).abs();
            eprintln!(
                "{label}: IoU {overlap:.3} with the reference, score {:.3} ({score_gap:.3} off)",
                got.confidence
            );
            assert!(overlap > 0.7, "{label}: {:?} vs {want}", got.rect);
            assert!(score_gap < 0.05, "{label}: {} vs {want}", got.confidence);
        }
        assert!(result
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["track_id"].is_null()));

        let mut annotated = dog.clone();
        detector.draw(&mut annotated, &settings);
        testing::save_annotated(&annotated, "dog-detection.png");
        // The default overlay fills boxes: the middle of the dog's box changed colour.
        let dog_box = detector
            .detections()
            .iter()
            .find(|d| detector.labels[d.class_id] == "dog")
            .unwrap()
            .rect;
        let centre = (
            ((dog_box[0] + dog_box[2]) / 2.0) as u32,
            ((dog_box[1] + dog_box[3]) / 2.0) as u32,
        );
        assert_ne!(
            annotated.pixel(centre.0, centre.1),
            dog.pixel(centre.0, centre.1)
        );
        // Outlines only leave it alone; no flags draw nothing.
        settings.detection.overlay = vec!["lines".into()];
        let mut lines = dog.clone();
        detector.draw(&mut lines, &settings);
        assert_eq!(
            lines.pixel(centre.0, centre.1),
            dog.pixel(centre.0, centre.1)
        );
        assert_ne!(lines, dog);
        settings.detection.overlay.clear();
        let mut nothing = dog.clone();
        detector.draw(&mut nothing, &settings);
        assert_eq!(nothing, dog);
    }

    #[test]
    fn boxes_past_the_edge_are_clipped_to_the_picture() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        settings.detection.confidence_threshold = 0.3;
        let mut detector = Detector::load(&settings, &env.context()).unwrap();
        // Stretched, a horse at the left edge has a raw box from x = -1.7.
        detector.input.fit = Fit::Stretch;
        let horses = testing::picture("horses");
        detector.process(&horses, &settings).unwrap();
        let rects: Vec<[f32; 4]> = detector.detections().iter().map(|d| d.rect).collect();
        let (w, h) = (horses.width as f32, horses.height as f32);
        assert!(rects.iter().any(|r| r[0] == 0.0), "{rects:?}");
        for r in &rects {
            assert!(
                r[0] >= 0.0 && r[1] >= 0.0 && r[2] <= w && r[3] <= h,
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_shifted_frame_keeps_its_track_ids() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        settings.detection.tracking_enabled = true;
        settings.detection.tracking_min_frames = 2;
        // Low enough for several objects (dog, bicycle, car, ...) to follow.
        settings.detection.confidence_threshold = 0.3;
        let mut detector = Detector::load(&settings, &env.context()).unwrap();
        let dog = testing::picture("dog");
        detector.process(&dog, &settings).unwrap();
        assert!(
            detector.detections().is_empty(),
            "seen once: not confirmed yet"
        );
        detector.process(&dog, &settings).unwrap();
        let before: Vec<(usize, Option<u64>)> = detector
            .detections()
            .iter()
            .map(|d| (d.class_id, d.track_id))
            .collect();
        assert!(
            before.len() >= 2 && before.iter().all(|(_, id)| id.is_some()),
            "{before:?}"
        );
        detector.process(&shifted(&dog, 6), &settings).unwrap();
        let after: Vec<(usize, Option<u64>)> = detector
            .detections()
            .iter()
            .map(|d| (d.class_id, d.track_id))
            .collect();
        for object in &before {
            assert!(
                after.contains(object),
                "{object:?} lost: {before:?} -> {after:?}"
            );
        }
        let moved = detector.result();
        assert!(moved[0]["track_id"].is_u64(), "{moved}");
    }

    #[test]
    fn captions_follow_the_overlay_flags() {
        let env = testing::Env::new();
        let detector = Detector::load(&env.settings, &env.context()).unwrap();
        let dog = detection(16, 0.474, [0.0; 4]);
        let flags = |list: &[&str]| list.iter().map(|&f| f.to_owned()).collect::<Vec<_>>();
        assert_eq!(
            detector
                .caption(&dog, &flags(&["box", "labels", "conf"]))
                .as_deref(),
            Some("dog 47%")
        );
        assert_eq!(
            detector.caption(&dog, &flags(&["labels"])).as_deref(),
            Some("dog")
        );
        assert_eq!(
            detector.caption(&dog, &flags(&["conf"])).as_deref(),
            Some("47%")
        );
        assert_eq!(detector.caption(&dog, &flags(&["box", "lines"])), None);
    }

    #[test]
    fn custom_files_follow_the_jetson_ssd_convention() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.txt");
        std::fs::write(&labels, "BACKGROUND\nbird\ncat\n").unwrap();
        settings.detection.model.network = testing::data("jetson-ssd.onnx");
        settings.detection.model.labels = labels.display().to_string();
        // On black, prior 1 is a bird of about 0.5 beside the cat; above this, none.
        settings.detection.confidence_threshold = 0.55;
        let mut detector = Detector::load(&settings, &env.context()).unwrap();
        assert_eq!(detector.input.shape(), vec![1, 3, 300, 300]);
        // tools/models/jetson_fixtures.py: prior 0 is a bird (softmax of 0, 4, 0) at
        // (0.1, 0.2, 0.5, 0.6); prior 1 a cat with logit 4 * the mean normalised pixel, so
        // (255 - 127) / 128 = 1 on a white frame shows it, black does not.
        let white = Frame::from_rgb(640, 480, vec![255; 640 * 480 * 3]).unwrap();
        detector.process(&white, &settings).unwrap();
        let result = detector.result();
        let e4 = 4f64.exp();
        let expect = [
            ("bird", e4 / (2.0 + e4), [64.0, 96.0, 320.0, 288.0]),
            ("cat", e4 / (2.0 + e4), [320.0, 240.0, 576.0, 480.0]),
        ];
        assert_eq!(result.as_array().unwrap().len(), 2, "{result}");
        for (label, confidence, rect) in expect {
            let found = result
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["label"] == label)
                .unwrap_or_else(|| panic!("{result}"));
            assert!(
                (found["confidence"].as_f64().unwrap() - confidence).abs() < 1e-3,
                "{result}"
            );
            assert_eq!(found["box"], json!(rect), "{result}");
        }
        detector.process(&Frame::new(640, 480), &settings).unwrap();
        let labels: Vec<&str> = detector
            .detections()
            .iter()
            .map(|d| detector.labels[d.class_id].as_str())
            .collect();
        assert_eq!(labels, ["bird"]);
        // Outputs named in the section must exist.
        settings.detection.model.output_layer = "scores,nope".into();
        assert!(Detector::load(&settings, &env.context()).is_err());
    }
}
