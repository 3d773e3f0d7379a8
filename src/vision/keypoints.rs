//! Keypoints as every pose decoder gives them (MoveNet, MediaPipe hands, trt_pose): the
//! people or hands found, their skeleton, the results JSON and the drawing.

use super::overlay;
use super::score_json;
use crate::media::Frame;
use serde_json::{json, Value as Json};

/// One keypoint in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub confidence: f32,
}

/// One body or hand: a slot per keypoint name of its skeleton, `None` where the keypoint
/// was not found or is below the confidence threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose {
    pub keypoints: Vec<Option<Keypoint>>,
    /// The model's own box (x1, y1, x2, y2) where it gives one, else the keypoints' extent.
    pub bbox: Option<[f32; 4]>,
}

impl Pose {
    /// A pose from keypoints, keeping those at `threshold` or above.
    pub fn thresholded(keypoints: impl IntoIterator<Item = Keypoint>, threshold: f32) -> Pose {
        Pose {
            keypoints: keypoints
                .into_iter()
                .map(|k| (k.confidence >= threshold).then_some(k))
                .collect(),
            bbox: None,
        }
    }

    pub fn found(&self) -> impl Iterator<Item = (usize, &Keypoint)> {
        self.keypoints
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.as_ref().map(|k| (i, k)))
    }

    /// The box to draw: the model's, else around the keypoints found (none without any).
    pub fn extent(&self) -> Option<[f32; 4]> {
        self.bbox.or_else(|| {
            self.found().fold(None, |b, (_, k)| {
                let [x1, y1, x2, y2] = b.unwrap_or([k.x, k.y, k.x, k.y]);
                Some([x1.min(k.x), y1.min(k.y), x2.max(k.x), y2.max(k.y)])
            })
        })
    }
}

/// Keypoint names and the links drawn between them (pairs of indices into the names).
#[derive(Debug, Clone, PartialEq)]
pub struct Skeleton {
    pub names: Vec<String>,
    pub links: Vec<(usize, usize)>,
}

/// The COCO body skeleton over the 17 keypoints of coco-keypoints.txt (nose, eyes, ears,
/// shoulders, elbows, wrists, hips, knees, ankles; left before right).
pub const COCO_LINKS: [(usize, usize); 19] = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
];

/// The 21-point hand of hand-keypoints.txt (wrist, then four joints a finger from the
/// thumb to the little finger): each finger from the wrist out, and across the knuckles.
pub const HAND_LINKS: [(usize, usize); 21] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (5, 9),
    (9, 10),
    (10, 11),
    (11, 12),
    (9, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (13, 17),
    (0, 17),
    (17, 18),
    (18, 19),
    (19, 20),
];

/// Sizes as jetson-inference's poseNet draws them: a share of the frame's larger side
/// (with a floor, so small frames still show them).
const KEYPOINT_SCALE: f32 = 0.0052;
const LINK_SCALE: f32 = 0.0013;
const MIN_RADIUS: f32 = 2.0;

impl Skeleton {
    /// `[{"keypoints": [{"name", "x", "y", "confidence"}]}]`, one entry per pose, with the
    /// keypoints found.
    pub fn result(&self, poses: &[Pose]) -> Json {
        let pose = |p: &Pose| {
            let keypoints: Vec<Json> = p
                .found()
                .map(|(i, k)| {
                    json!({
                        "name": self.name(i),
                        "x": round1(k.x),
                        "y": round1(k.y),
                        "confidence": score_json(k.confidence),
                    })
                })
                .collect();
            json!({ "keypoints": keypoints })
        };
        Json::Array(poses.iter().map(pose).collect())
    }

    fn name(&self, i: usize) -> String {
        self.names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("keypoint {i}"))
    }

    /// Draws what `overlay` asks for ("keypoints", "links", "boxes") of every pose.
    pub fn draw(&self, frame: &mut Frame, poses: &[Pose], overlay: &[String]) {
        let wants = |flag: &str| overlay.iter().any(|f| f == flag);
        let size = frame.width.max(frame.height) as f32;
        let thickness = (LINK_SCALE * size).round().max(1.0) as u32;
        let radius = (KEYPOINT_SCALE * size).max(MIN_RADIUS);
        for pose in poses {
            if wants("boxes") {
                if let Some([x1, y1, x2, y2]) = pose.extent() {
                    let color = overlay::class_color(0);
                    let (x1, y1, x2, y2) = (x1 as i32, y1 as i32, x2 as i32, y2 as i32);
                    overlay::rect_outline(frame, x1, y1, x2, y2, color, thickness);
                }
            }
            if wants("links") {
                self.draw_links(frame, pose, thickness);
            }
            if wants("keypoints") {
                for (i, k) in pose.found() {
                    let color = overlay::class_color(i);
                    overlay::circle(frame, k.x, k.y, radius, color);
                }
            }
        }
    }

    fn draw_links(&self, frame: &mut Frame, pose: &Pose, thickness: u32) {
        let at = |i: usize| pose.keypoints.get(i).copied().flatten();
        for (n, &(a, b)) in self.links.iter().enumerate() {
            if let (Some(a), Some(b)) = (at(a), at(b)) {
                let color = overlay::class_color(n);
                overlay::line(frame, a.x, a.y, b.x, b.y, color, thickness);
            }
        }
    }
}

/// Pixel coordinates for the JSON: a tenth of a pixel is plenty.
fn round1(v: f32) -> f64 {
    (f64::from(v) * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton() -> Skeleton {
        Skeleton {
            names: vec!["a".into(), "b".into(), "c".into()],
            links: vec![(0, 1), (1, 2)],
        }
    }

    fn point(x: f32, y: f32, confidence: f32) -> Keypoint {
        Keypoint { x, y, confidence }
    }

    #[test]
    fn the_threshold_drops_keypoints_and_the_result_names_the_rest() {
        let pose = Pose::thresholded(
            [
                point(10.0, 20.0, 0.9),
                point(30.0, 40.0, 0.1),
                point(50.04, 5.0, 0.5),
            ],
            0.3,
        );
        assert_eq!(pose.found().count(), 2);
        assert_eq!(pose.extent(), Some([10.0, 5.0, 50.04, 20.0]));
        let result = skeleton().result(&[pose]);
        assert_eq!(
            result,
            json!([{"keypoints": [
                {"name": "a", "x": 10.0, "y": 20.0, "confidence": 0.9},
                {"name": "c", "x": 50.0, "y": 5.0, "confidence": 0.5},
            ]}])
        );
    }

    #[test]
    fn draws_only_the_links_whose_ends_were_found() {
        let pose = Pose::thresholded(
            [
                point(10.0, 10.0, 0.9),
                point(90.0, 10.0, 0.9),
                point(90.0, 90.0, 0.0),
            ],
            0.5,
        );
        let mut frame = Frame::new(100, 100);
        skeleton().draw(&mut frame, &[pose], &["links".into()]);
        // The link a-b along y = 10 is drawn; b-c (c missing) is not; no circles.
        assert_ne!(frame.pixel(50, 10), [0, 0, 0]);
        assert_eq!(frame.pixel(90, 50), [0, 0, 0]);
        assert_eq!(frame.pixel(10, 12), [0, 0, 0]);
    }

    #[test]
    fn boxes_and_keypoints_follow_their_flags() {
        let mut pose = Pose::thresholded([point(50.0, 50.0, 1.0)], 0.5);
        pose.bbox = Some([20.0, 20.0, 80.0, 80.0]);
        let mut frame = Frame::new(100, 100);
        skeleton().draw(&mut frame, std::slice::from_ref(&pose), &[]);
        assert!(frame.rgb.iter().all(|&v| v == 0));
        skeleton().draw(&mut frame, &[pose], &["boxes".into(), "keypoints".into()]);
        assert_eq!(frame.pixel(20, 50), overlay::class_color(0));
        assert_eq!(frame.pixel(50, 50), overlay::class_color(0));
        assert_eq!(frame.pixel(35, 50), [0, 0, 0]);
    }
}
