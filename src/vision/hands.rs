//! Hand pose, MediaPipe's two stages: the palm detector ("mediapipe-palm") on the
//! letterboxed frame, then the hand landmark model on a square crop around each palm,
//! rotated so the fingers point up and widened 2.6 times, as MediaPipe's hand tracking
//! graph does. Each frame is detected afresh (MediaPipe also tracks hands from the previous
//! frame's landmarks, which saves the detector's run; not done here).

use super::detection::iou;
use super::keypoints::{Keypoint, Pose, Skeleton, HAND_LINKS};
use super::mask::to_byte;
use super::preprocess::{resize_region, to_tensor, InputSpec};
use super::scores::sigmoid;
use super::{catalog::Entry, Context, Task};
use crate::engine::{Engine, Io};
use crate::media::Frame;
use crate::settings::Settings;
use anyhow::Context as _;
use serde_json::Value as Json;
use std::f32::consts::{FRAC_PI_2, PI};
use std::path::Path;

/// MediaPipe's settings for the hand pipeline.
const MIN_PALM_SCORE: f32 = 0.5;
const PALM_NMS_IOU: f32 = 0.3;
const MIN_PRESENCE: f32 = 0.5;
const MAX_HANDS: usize = 2;
/// The crop around a palm: the palm box made square on its long side, moved half a palm
/// towards the fingers, then 2.6 times as large.
const CROP_SCALE: f32 = 2.6;
const CROP_SHIFT: f32 = -0.5;
/// Palm keypoints giving the hand's direction: the wrist, and the middle finger's base.
const WRIST: usize = 0;
const MIDDLE_FINGER: usize = 2;
const PALM_KEYPOINTS: usize = 7;

pub fn build(landmark: &Entry, path: &Path, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    Ok(Box::new(Hands::load(landmark, path, ctx)?))
}

/// One model of the pipeline and its input.
struct Stage {
    engine: Box<dyn Engine>,
    input: InputSpec,
}

impl Stage {
    fn load(entry: &Entry, path: &Path, ctx: &Context) -> anyhow::Result<Stage> {
        let input = InputSpec::of(entry)?;
        // Landmarks and presence; the palm detector's boxes and scores.
        let outputs = entry.outputs.iter().take(2).cloned().collect();
        // Fed crops and letterboxed palms made on the host, not whole frames.
        let engine =
            ctx.load_picture_model(path, &input, (entry.input.clone(), outputs), Io::Host)?;
        Ok(Stage { engine, input })
    }

    fn run(&mut self, picture: &Frame) -> anyhow::Result<Vec<Vec<f32>>> {
        let i = &self.input;
        let tensor = to_tensor(picture, i.layout, i.dtype, i.mean, i.std);
        let outputs = self.engine.run(&tensor)?;
        anyhow::ensure!(
            outputs.len() == 2,
            "expected 2 outputs, got {}",
            outputs.len()
        );
        Ok(outputs.iter().map(|o| o.as_f32().into_owned()).collect())
    }
}

struct Hands {
    palm: Stage,
    anchors: Vec<[f32; 2]>,
    landmark: Stage,
    skeleton: Skeleton,
    hands: Vec<Pose>,
}

impl Task for Hands {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let palms = self.detect_palms(frame, letterbox(frame))?;
        self.hands.clear();
        for palm in palms.iter().take(MAX_HANDS) {
            let rect = HandRect::around(palm);
            if let Some(keypoints) = self.landmarks(frame, &rect)? {
                let threshold = settings.pose.confidence_threshold;
                self.hands.push(Pose::thresholded(keypoints, threshold));
            }
        }
        Ok(())
    }

    fn draw(&self, frame: &mut Frame, settings: &Settings) {
        self.skeleton
            .draw(frame, &self.hands, &settings.pose.overlay);
    }

    fn result(&self) -> Json {
        self.skeleton.result(&self.hands)
    }
}

impl Hands {
    fn load(landmark: &Entry, path: &Path, ctx: &Context) -> anyhow::Result<Hands> {
        let palm = ctx
            .catalog
            .entries
            .iter()
            .find(|e| e.task == "hand-detection")
            .context("the catalog has no palm detector (task hand-detection)")?;
        Ok(Hands {
            palm: Stage::load(palm, &ctx.catalog.path_of(palm), ctx)?,
            anchors: anchors(palm)?,
            landmark: Stage::load(landmark, path, ctx)?,
            skeleton: Skeleton {
                names: ctx.catalog.labels(landmark)?,
                links: HAND_LINKS.to_vec(),
            },
            hands: Vec::new(),
        })
    }

    /// Palms inside `region` (x1, y1, x2, y2, square) of the frame, best first, in frame
    /// pixels.
    fn detect_palms(&mut self, frame: &Frame, region: [f32; 4]) -> anyhow::Result<Vec<Palm>> {
        let (width, height) = (self.palm.input.width, self.palm.input.height);
        let picture = resize_region(frame, region, width, height);
        let outputs = self.palm.run(&picture)?;
        let palms = decode_palms(&outputs[0], &outputs[1], &self.anchors, width as f32)?;
        Ok(weighted_nms(palms, PALM_NMS_IOU)
            .iter()
            .map(|p| p.in_region(region))
            .collect())
    }

    /// The 21 landmarks of the hand in `rect`, or `None` when the model sees no hand there.
    fn landmarks(
        &mut self,
        frame: &Frame,
        rect: &HandRect,
    ) -> anyhow::Result<Option<Vec<Keypoint>>> {
        let size = self.landmark.input.width;
        let outputs = self.landmark.run(&rect.crop(frame, size))?;
        let presence = outputs[1].first().copied().unwrap_or(0.0);
        if presence < MIN_PRESENCE {
            return Ok(None);
        }
        // (x, y, z) per landmark in crop pixels; z is depth, not drawn.
        let keypoints = outputs[0]
            .chunks_exact(3)
            .map(|p| {
                let [x, y] = rect.point(p[0] / size as f32, p[1] / size as f32);
                Keypoint {
                    x,
                    y,
                    confidence: presence,
                }
            })
            .collect();
        Ok(Some(keypoints))
    }
}

/// The square around the whole frame, centred (MediaPipe pads the frame to a square the
/// detector sees undistorted).
fn letterbox(frame: &Frame) -> [f32; 4] {
    let (w, h) = (frame.width as f32, frame.height as f32);
    let side = w.max(h);
    let (x, y) = ((w - side) / 2.0, (h - side) / 2.0);
    [x, y, x + side, y + side]
}

/// A palm: score, box (x1, y1, x2, y2) and 7 keypoints (x, y).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Palm {
    score: f32,
    bbox: [f32; 4],
    keypoints: [[f32; 2]; PALM_KEYPOINTS],
}

impl Palm {
    /// This palm, normalised to a square `region` of the frame, in frame pixels.
    fn in_region(&self, region: [f32; 4]) -> Palm {
        let side = region[2] - region[0];
        let to_frame = |[x, y]: [f32; 2]| [region[0] + x * side, region[1] + y * side];
        let [x1, y1] = to_frame([self.bbox[0], self.bbox[1]]);
        let [x2, y2] = to_frame([self.bbox[2], self.bbox[3]]);
        Palm {
            score: self.score,
            bbox: [x1, y1, x2, y2],
            keypoints: self.keypoints.map(to_frame),
        }
    }
}

/// The detector's anchor centres (all anchors have size 1), normalised: per distinct
/// stride of `anchor_strides`, a grid of input/stride cells, `anchors_per_cell` anchors
/// each, cell after cell.
fn anchors(entry: &Entry) -> anyhow::Result<Vec<[f32; 2]>> {
    let numbers = |key: &str| -> anyhow::Result<Vec<usize>> {
        let values = entry
            .extra
            .get(key)
            .and_then(toml::Value::as_array)
            .with_context(|| format!("{}: no {key} list in the catalog", entry.name))?;
        values
            .iter()
            .map(|v| v.as_integer().and_then(|n| usize::try_from(n).ok()))
            .collect::<Option<_>>()
            .with_context(|| format!("{}: {key} must be whole numbers", entry.name))
    };
    let mut strides = numbers("anchor_strides")?;
    strides.dedup();
    let per_cell = numbers("anchors_per_cell")?;
    anyhow::ensure!(
        strides.len() == per_cell.len() && !strides.contains(&0),
        "{}: {} distinct strides but {} anchors_per_cell",
        entry.name,
        strides.len(),
        per_cell.len()
    );
    let size = InputSpec::of(entry)?.width as usize;
    let mut centres = Vec::new();
    for (stride, count) in strides.into_iter().zip(per_cell) {
        let grid = size.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                let centre = [
                    (x as f32 + 0.5) / grid as f32,
                    (y as f32 + 0.5) / grid as f32,
                ];
                centres.extend(std::iter::repeat_n(centre, count));
            }
        }
    }
    Ok(centres)
}

/// Palms scoring at least `MIN_PALM_SCORE`, normalised to the detector's input: per
/// anchor, `raw` holds (cx, cy, w, h) then 7 (x, y) in input pixels, offsets from the
/// anchor's centre; `logits` the score logit.
fn decode_palms(
    raw: &[f32],
    logits: &[f32],
    anchors: &[[f32; 2]],
    size: f32,
) -> anyhow::Result<Vec<Palm>> {
    const VALUES: usize = 4 + 2 * PALM_KEYPOINTS;
    anyhow::ensure!(
        raw.len() == anchors.len() * VALUES && logits.len() == anchors.len(),
        "palm outputs of {} and {} values do not fit {} anchors",
        raw.len(),
        logits.len(),
        anchors.len()
    );
    let mut palms = Vec::new();
    for ((r, &logit), &[ax, ay]) in raw.chunks_exact(VALUES).zip(logits).zip(anchors) {
        let score = sigmoid(logit);
        if score < MIN_PALM_SCORE {
            continue;
        }
        let (cx, cy) = (r[0] / size + ax, r[1] / size + ay);
        let (w, h) = (r[2] / size, r[3] / size);
        palms.push(Palm {
            score,
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            keypoints: std::array::from_fn(|k| {
                [r[4 + 2 * k] / size + ax, r[5 + 2 * k] / size + ay]
            }),
        });
    }
    Ok(palms)
}

/// MediaPipe's weighted non-maximum suppression: the best palm and all that overlap it
/// by more than `threshold` are averaged, weighted by score, into one with the best score.
fn weighted_nms(mut palms: Vec<Palm>, threshold: f32) -> Vec<Palm> {
    palms.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    while let Some(best) = palms.first().copied() {
        let (overlapping, rest): (Vec<Palm>, Vec<Palm>) = palms
            .into_iter()
            .partition(|p| iou(&p.bbox, &best.bbox) > threshold);
        palms = rest;
        let total: f32 = overlapping.iter().map(|p| p.score).sum();
        let mean = |value: &dyn Fn(&Palm) -> f32| {
            overlapping.iter().map(|p| p.score * value(p)).sum::<f32>() / total
        };
        kept.push(Palm {
            score: best.score,
            bbox: std::array::from_fn(|i| mean(&|p| p.bbox[i])),
            keypoints: std::array::from_fn(|k| {
                std::array::from_fn(|i| mean(&|p| p.keypoints[k][i]))
            }),
        });
    }
    kept
}

/// The square crop the landmark model sees, in frame pixels; `rotation` (radians,
/// clockwise on screen) turns the crop so the fingers point up in it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HandRect {
    cx: f32,
    cy: f32,
    side: f32,
    rotation: f32,
}

impl HandRect {
    /// MediaPipe's rectangle from a palm (in frame pixels): rotated by the wrist -> middle
    /// finger direction, square on the box's long side, shifted towards the fingers, scaled.
    fn around(palm: &Palm) -> HandRect {
        let [x0, y0] = palm.keypoints[WRIST];
        let [x1, y1] = palm.keypoints[MIDDLE_FINGER];
        let rotation = normalize_angle(FRAC_PI_2 - (-(y1 - y0)).atan2(x1 - x0));
        let [bx1, by1, bx2, by2] = palm.bbox;
        let (w, h) = (bx2 - bx1, by2 - by1);
        let (sin, cos) = rotation.sin_cos();
        // The shift is along the crop's own (rotated) vertical axis.
        let (dx, dy) = (-h * CROP_SHIFT * sin, h * CROP_SHIFT * cos);
        HandRect {
            cx: (bx1 + bx2) / 2.0 + dx,
            cy: (by1 + by2) / 2.0 + dy,
            side: w.max(h) * CROP_SCALE,
            rotation,
        }
    }

    /// A point of the crop (u, v in 0..1) in frame pixels.
    fn point(&self, u: f32, v: f32) -> [f32; 2] {
        let (sin, cos) = self.rotation.sin_cos();
        let (ox, oy) = ((u - 0.5) * self.side, (v - 0.5) * self.side);
        [self.cx + ox * cos - oy * sin, self.cy + ox * sin + oy * cos]
    }

    /// The crop as a `size` x `size` picture, sampled bilinearly; black outside the frame.
    fn crop(&self, frame: &Frame, size: u32) -> Frame {
        let mut out = Frame::new(size, size);
        let step = 1.0 / size as f32;
        for (i, pixel) in out.rgb.chunks_exact_mut(3).enumerate() {
            let (u, v) = ((i as u32 % size) as f32, (i as u32 / size) as f32);
            let [x, y] = self.point((u + 0.5) * step, (v + 0.5) * step);
            pixel.copy_from_slice(&bilinear(frame, x - 0.5, y - 0.5));
        }
        out
    }
}

/// An angle brought into -pi..pi.
fn normalize_angle(angle: f32) -> f32 {
    angle - 2.0 * PI * ((angle + PI) / (2.0 * PI)).floor()
}

/// The frame's colour at (x, y) in pixel-centre coordinates, black outside.
fn bilinear(frame: &Frame, x: f32, y: f32) -> [u8; 3] {
    let (x0, y0) = (x.floor(), y.floor());
    let (tx, ty) = (x - x0, y - y0);
    let at = |x: f32, y: f32| -> [f32; 3] {
        if x < 0.0 || y < 0.0 || x >= frame.width as f32 || y >= frame.height as f32 {
            return [0.0; 3];
        }
        frame.pixel(x as u32, y as u32).map(f32::from)
    };
    let (a, b, c, d) = (
        at(x0, y0),
        at(x0 + 1.0, y0),
        at(x0, y0 + 1.0),
        at(x0 + 1.0, y0 + 1.0),
    );
    std::array::from_fn(|i| {
        let top = a[i] + (b[i] - a[i]) * tx;
        let bottom = c[i] + (d[i] - c[i]) * tx;
        to_byte(top + (bottom - top) * ty)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{self, Env};

    fn hands(env: &Env) -> Hands {
        let entry = env.catalog.get("mediapipe-hand-landmark").unwrap();
        Hands::load(entry, &env.catalog.path_of(entry), &env.context()).unwrap()
    }

    #[test]
    fn anchors_follow_the_catalog() {
        let env = Env::new();
        let centres = anchors(env.catalog.get("mediapipe-palm").unwrap()).unwrap();
        assert_eq!(centres.len(), 2016);
        assert_eq!(centres[0], [0.5 / 24.0, 0.5 / 24.0]);
        assert_eq!(centres[1], centres[0]);
        assert_eq!(centres[2], [1.5 / 24.0, 0.5 / 24.0]);
        // The 12x12 grid starts after 24 * 24 * 2 anchors, 6 a cell.
        assert_eq!(centres[1152], [0.5 / 12.0, 0.5 / 12.0]);
        assert_eq!(centres[1157], centres[1152]);
        assert_eq!(centres[2015], [11.5 / 12.0, 11.5 / 12.0]);
    }

    #[test]
    fn weighted_nms_averages_overlapping_palms() {
        let palm = |score: f32, x: f32| Palm {
            score,
            bbox: [x, 0.0, x + 1.0, 1.0],
            keypoints: [[x, 0.0]; PALM_KEYPOINTS],
        };
        let kept = weighted_nms(vec![palm(0.6, 0.2), palm(0.9, 0.0), palm(0.7, 5.0)], 0.3);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        // (0.9 * 0 + 0.6 * 0.2) / 1.5
        assert!((kept[0].bbox[0] - 0.08).abs() < 1e-6, "{kept:?}");
        assert!((kept[0].keypoints[3][0] - 0.08).abs() < 1e-6);
        assert_eq!(kept[1].bbox[0], 5.0);
    }

    #[test]
    fn the_crop_turns_with_the_hand() {
        // A hand pointing right (wrist left of the middle finger): turned a quarter clockwise.
        let palm = Palm {
            score: 1.0,
            bbox: [90.0, 90.0, 110.0, 110.0],
            keypoints: std::array::from_fn(|k| {
                if k == MIDDLE_FINGER {
                    [110.0, 100.0]
                } else {
                    [90.0, 100.0]
                }
            }),
        };
        let rect = HandRect::around(&palm);
        assert!((rect.rotation - FRAC_PI_2).abs() < 1e-5, "{rect:?}");
        assert!((rect.side - 52.0).abs() < 1e-4);
        // Shifted half a palm towards the fingers, to the right.
        assert!(
            (rect.cx - 110.0).abs() < 1e-4 && (rect.cy - 100.0).abs() < 1e-4,
            "{rect:?}"
        );
        // The crop's top centre (fingertips) lies right of the centre in the frame.
        let [x, y] = rect.point(0.5, 0.0);
        assert!(
            (x - 136.0).abs() < 1e-3 && (y - 100.0).abs() < 1e-3,
            "{x} {y}"
        );
        // An upright hand is not turned.
        let mut upright = palm;
        upright.keypoints[MIDDLE_FINGER] = [90.0, 80.0];
        assert!(HandRect::around(&upright).rotation.abs() < 1e-6);
        // Cropping samples where `point` says: a white dot right of the rect's centre shows
        // at the top of the crop.
        let mut frame = Frame::new(200, 200);
        let i = (100 * 200 + 130) * 3;
        frame.rgb[i..i + 3].copy_from_slice(&[255, 255, 255]);
        let crop = rect.crop(&frame, 52);
        let (brightest, _) = crop
            .rgb
            .chunks_exact(3)
            .enumerate()
            .max_by_key(|(_, p)| p[0])
            .unwrap();
        assert_eq!((brightest % 52, brightest / 52), (26, 5), "{brightest}");
    }

    #[test]
    fn palms_and_landmarks_match_the_reference_on_person_jpg() {
        let env = Env::new();
        let reference = testing::reference();
        let want = &reference["hands"];
        let mut hands = hands(&env);
        let picture = testing::picture("person");
        let [x, y, side, _] = [189.0, 179.0, 100.0, 100.0];
        let palms = hands
            .detect_palms(&picture, [x, y, x + side, y + side])
            .unwrap();
        let expected = want["palms"].as_array().unwrap();
        assert_eq!(palms.len(), expected.len(), "{palms:?}");
        let (palm, wanted) = (&palms[0], &expected[0]);
        let number = |v: &Json| v.as_f64().unwrap() as f32;
        assert!(
            (palm.score - number(&wanted["score"])).abs() < 0.05,
            "{palm:?}"
        );
        let b = &wanted["box_cxcywh"];
        let [x1, y1, x2, y2] = palm.bbox;
        let got = [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1];
        for (g, w) in got.iter().zip(b.as_array().unwrap()) {
            assert!((g - number(w)).abs() < 1.0, "{got:?} vs {b}");
        }
        for (g, w) in palm
            .keypoints
            .iter()
            .zip(wanted["keypoints_xy"].as_array().unwrap())
        {
            assert!((g[0] - number(&w[0])).abs() < 1.0 && (g[1] - number(&w[1])).abs() < 1.0);
        }
        // The landmark model on the reference's unrotated crop: a few pixels of hand, so
        // low presence, and the hand is not reported.
        let c = &want["hand_landmark"]["crop_xyxy"];
        let side = number(&c[2]) - number(&c[0]);
        let rect = HandRect {
            cx: number(&c[0]) + side / 2.0,
            cy: number(&c[1]) + side / 2.0,
            side,
            rotation: 0.0,
        };
        let outputs = hands.landmark.run(&rect.crop(&picture, 224)).unwrap();
        let presence = number(&want["hand_landmark"]["presence"]);
        assert!((outputs[1][0] - presence).abs() < 0.01, "{}", outputs[1][0]);
        assert_eq!(hands.landmarks(&picture, &rect).unwrap(), None);
    }

    #[test]
    fn a_pose_network_of_task_hand_pose_runs_the_hand_pipeline() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.pose.model.network = "mediapipe-hand-landmark".into();
        let mut task = crate::vision::pose::build(&settings, &env.context()).unwrap();
        // person.jpg's hands are a few pixels: the whole-frame detector finds none.
        task.process(&testing::picture("person"), &settings)
            .unwrap();
        assert_eq!(task.result(), serde_json::json!([]));
    }
}
