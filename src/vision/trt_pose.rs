//! jetson-inference's pose models (resnet18-body, resnet18-hand, densenet121-body: trt_pose
//! ONNX files that users bring): confidence maps and part affinity fields decoded into
//! people or hands.
//!
//! The convention, as jetson-inference's poseNet loads these files:
//! - input "input" [1,3,224,224] NCHW RGB, (pixel / 255 - mean) / std with ImageNet's
//!   mean and std (the size is read from the file where it declares one);
//! - output "cmap" [1,K,H,W]: a confidence map per keypoint; K = 18 is the body (COCO's 17
//!   keypoints, then the neck; trt_pose's human_pose.json), K = 21 the hand (palm, then
//!   four points a finger; trt_pose_hand's hand_pose.json);
//! - output "paf" [1,2L,H,W]: a part affinity field per link k of that topology's skeleton,
//!   channel 2k its row (y) component and 2k+1 its column (x) component, pointing from the
//!   link's first keypoint to its second.
//!
//! Decoding follows trt_pose's parser, with two changes (marked *):
//! 1. peaks: cells at or above the threshold that are the largest of their 5x5 window
//!    (at most 100 a keypoint; *of equal cells only the first in reading order, where
//!    trt_pose keeps all), refined to the confidence-weighted mean position over that
//!    window (mirrored at the borders), cell centres at +0.5;
//! 2. link scores: for each pair of peaks of a link's two keypoints, the mean over 7 points
//!    evenly spaced from the first to the second of the field (the cell under the point)
//!    dotted with the unit vector between them;
//! 3. *matching: greedy, best score first, each peak used at most once per link, pairs
//!    under the link threshold dropped. trt_pose solves this assignment exactly (Munkres);
//!    greedy is what OpenPose does and gives the same pairs unless people overlap;
//! 4. grouping: every connected group of matched peaks is one person (or hand).

use super::jetson;
use super::keypoints::{Keypoint, Pose, Skeleton};
use super::preprocess::InputSpec;
use super::{custom_layers, Context, Task};
use crate::engine::{Engine, Io, Tensor};
use crate::media::Frame;
use crate::settings::{typed::Model, Settings};
use anyhow::Context as _;
use serde_json::Value as Json;
use std::path::Path;

/// Half the side of the window a peak must top, and that its position is refined over.
const WINDOW_RADIUS: usize = 2;
const MAX_PEAKS: usize = 100;
const INTEGRAL_SAMPLES: usize = 7;
/// trt_pose's default: a pair whose field agrees less than this is no link.
const LINK_THRESHOLD: f32 = 0.1;

const BODY_NAMES: [&str; 18] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "neck",
];

/// human_pose.json's skeleton, from 0: field k links these two keypoints.
const BODY_LINKS: [(usize, usize); 21] = [
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
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
    (17, 0),
    (17, 5),
    (17, 6),
    (17, 11),
    (17, 12),
];

const HAND_NAMES: [&str; 21] = [
    "palm",
    "thumb_1",
    "thumb_2",
    "thumb_3",
    "thumb_4",
    "index_finger_1",
    "index_finger_2",
    "index_finger_3",
    "index_finger_4",
    "middle_finger_1",
    "middle_finger_2",
    "middle_finger_3",
    "middle_finger_4",
    "ring_finger_1",
    "ring_finger_2",
    "ring_finger_3",
    "ring_finger_4",
    "baby_finger_1",
    "baby_finger_2",
    "baby_finger_3",
    "baby_finger_4",
];

/// hand_pose.json's skeleton, from 0: the palm to each finger's base, then along fingers.
const HAND_LINKS: [(usize, usize); 20] = [
    (0, 4),
    (0, 8),
    (0, 12),
    (0, 16),
    (0, 20),
    (1, 2),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (7, 8),
    (9, 10),
    (10, 11),
    (11, 12),
    (13, 14),
    (14, 15),
    (15, 16),
    (17, 18),
    (18, 19),
    (19, 20),
];

/// The topology a model with `parts` confidence maps follows.
fn topology(parts: usize) -> anyhow::Result<Skeleton> {
    let (names, links): (&[&str], &[(usize, usize)]) = match parts {
        18 => (&BODY_NAMES, &BODY_LINKS),
        21 => (&HAND_NAMES, &HAND_LINKS),
        _ => anyhow::bail!(
            "a pose model with {parts} keypoint maps: trt_pose's body (18) or hand (21) expected"
        ),
    };
    Ok(Skeleton {
        names: names.iter().map(|&n| n.to_owned()).collect(),
        links: links.to_vec(),
    })
}

/// The task on a user's trt_pose file.
pub struct TrtPose {
    engine: Box<dyn Engine>,
    input: InputSpec,
    /// Chosen from the first output's keypoint count.
    skeleton: Option<Skeleton>,
    poses: Vec<Pose>,
}

pub fn build(path: &Path, model: &Model, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    let (name, outputs) = custom_layers(model, "", &["cmap", "paf"]);
    let input = jetson::imagenet_input(path, &name, &[1, 3, 224, 224])?;
    let engine = ctx.load_picture_model(path, &input, (name, outputs), Io::Frames)?;
    Ok(Box::new(TrtPose {
        engine,
        input,
        skeleton: None,
        poses: Vec::new(),
    }))
}

impl Task for TrtPose {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let outputs = self.input.run(&mut *self.engine, frame)?;
        let [cmap, paf] = outputs.as_slice() else {
            anyhow::bail!("expected 2 outputs (cmap, paf), got {}", outputs.len());
        };
        let cmap = Maps::of(cmap).context("cmap")?;
        let paf = Maps::of(paf).context("paf")?;
        let skeleton = match &mut self.skeleton {
            Some(skeleton) if skeleton.names.len() == cmap.channels => skeleton,
            slot => slot.insert(topology(cmap.channels)?),
        };
        let size = (frame.width as f32, frame.height as f32);
        let threshold = settings.pose.confidence_threshold;
        self.poses = decode(&cmap, &paf, &skeleton.links, threshold, size)?;
        Ok(())
    }

    fn draw(&self, frame: &mut Frame, settings: &Settings) {
        if let Some(skeleton) = &self.skeleton {
            skeleton.draw(frame, &self.poses, &settings.pose.overlay);
        }
    }

    fn result(&self) -> Json {
        match &self.skeleton {
            Some(skeleton) => skeleton.result(&self.poses),
            None => Json::Array(Vec::new()),
        }
    }
}

/// A [1,C,H,W] output: C maps of H x W cells.
struct Maps<'a> {
    data: std::borrow::Cow<'a, [f32]>,
    channels: usize,
    height: usize,
    width: usize,
}

impl Maps<'_> {
    fn of(tensor: &Tensor) -> anyhow::Result<Maps<'_>> {
        let &[1, channels, height, width] = tensor.shape.as_slice() else {
            anyhow::bail!("shape {:?} is not [1,C,H,W]", tensor.shape);
        };
        Ok(Maps {
            data: tensor.as_f32(),
            channels,
            height,
            width,
        })
    }

    fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
}

/// A keypoint candidate: position normalised to the map (0..1), and its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Peak {
    y: f32,
    x: f32,
    score: f32,
}

/// People (or hands) in frame pixels, `size` being the frame's (width, height).
fn decode(
    cmap: &Maps,
    paf: &Maps,
    links: &[(usize, usize)],
    threshold: f32,
    size: (f32, f32),
) -> anyhow::Result<Vec<Pose>> {
    anyhow::ensure!(
        paf.channels == 2 * links.len() && (paf.height, paf.width) == (cmap.height, cmap.width),
        "paf [{}, {}, {}] does not fit {} links on {}x{} maps",
        paf.channels,
        paf.height,
        paf.width,
        links.len(),
        cmap.height,
        cmap.width
    );
    // A threshold of 0 would make every cell of a flat map a peak; keep a floor.
    let threshold = threshold.max(1e-3);
    let peaks: Vec<Vec<Peak>> = (0..cmap.channels)
        .map(|c| find_peaks(cmap.plane(c), cmap.height, cmap.width, threshold))
        .collect();
    let matches: Vec<Vec<(usize, usize)>> = links
        .iter()
        .enumerate()
        .map(|(k, &(a, b))| {
            let field = (paf.plane(2 * k), paf.plane(2 * k + 1));
            let scores = score_pairs(field, (paf.height, paf.width), &peaks[a], &peaks[b]);
            match_greedy(scores, LINK_THRESHOLD)
        })
        .collect();
    let (width, height) = size;
    let poses = group(&peaks, links, &matches)
        .into_iter()
        .map(|members| Pose {
            keypoints: members
                .iter()
                .enumerate()
                .map(|(c, m)| {
                    m.map(|m| {
                        let p = peaks[c][m];
                        Keypoint {
                            x: p.x * width,
                            y: p.y * height,
                            confidence: p.score,
                        }
                    })
                })
                .collect(),
            bbox: None,
        })
        .collect();
    Ok(poses)
}

/// Cells at or above `threshold` that no cell of their window exceeds, refined.
fn find_peaks(plane: &[f32], height: usize, width: usize, threshold: f32) -> Vec<Peak> {
    let mut peaks = Vec::new();
    for i in 0..height {
        for j in 0..width {
            let value = plane[i * width + j];
            if value < threshold || !tops_window(plane, height, width, i, j) {
                continue;
            }
            peaks.push(refine(plane, height, width, i, j));
            if peaks.len() == MAX_PEAKS {
                return peaks;
            }
        }
    }
    peaks
}

/// Whether cell (i, j) tops its window. Of equal cells the first in reading order wins,
/// so a plateau (or a peak between two cells) gives one peak where trt_pose gives several.
fn tops_window(plane: &[f32], height: usize, width: usize, i: usize, j: usize) -> bool {
    let own = i * width + j;
    let value = plane[own];
    let rows = i.saturating_sub(WINDOW_RADIUS)..(i + WINDOW_RADIUS + 1).min(height);
    rows.into_iter().all(|ii| {
        let columns = j.saturating_sub(WINDOW_RADIUS)..(j + WINDOW_RADIUS + 1).min(width);
        columns.into_iter().all(|jj| {
            let other = ii * width + jj;
            plane[other] < value || (plane[other] == value && other >= own)
        })
    })
}

/// The confidence-weighted mean position over the window around cell (i, j), normalised.
fn refine(plane: &[f32], height: usize, width: usize, i: usize, j: usize) -> Peak {
    let r = WINDOW_RADIUS as isize;
    let (mut sy, mut sx, mut sum) = (0.0, 0.0, 0.0);
    for ii in i as isize - r..=i as isize + r {
        for jj in j as isize - r..=j as isize + r {
            let w = plane[mirror(ii, height) * width + mirror(jj, width)];
            sy += w * ii as f32;
            sx += w * jj as f32;
            sum += w;
        }
    }
    Peak {
        y: (sy / sum + 0.5) / height as f32,
        x: (sx / sum + 0.5) / width as f32,
        score: plane[i * width + j],
    }
}

/// An index mirrored back into 0..len at the borders (-1 -> 1, len -> len - 2).
fn mirror(index: isize, len: usize) -> usize {
    let len = len as isize;
    let mirrored = if index < 0 {
        -index
    } else if index >= len {
        2 * len - index - 2
    } else {
        index
    };
    mirrored.clamp(0, len - 1) as usize
}

/// Every pair (a, b) of peaks of a link's two keypoints with its line-integral score over
/// `field` (row and column components, `size` rows x columns).
fn score_pairs(
    field: (&[f32], &[f32]),
    size: (usize, usize),
    from: &[Peak],
    to: &[Peak],
) -> Vec<(f32, usize, usize)> {
    let mut scores = Vec::with_capacity(from.len() * to.len());
    for (a, pa) in from.iter().enumerate() {
        for (b, pb) in to.iter().enumerate() {
            scores.push((line_integral(field, size, pa, pb), a, b));
        }
    }
    scores
}

/// How well the field agrees with the segment a -> b: the mean over `INTEGRAL_SAMPLES`
/// points of the field dotted with the segment's direction; points off the map count 0.
fn line_integral(field: (&[f32], &[f32]), size: (usize, usize), a: &Peak, b: &Peak) -> f32 {
    let (rows, columns) = size;
    let (ay, ax) = (a.y * rows as f32, a.x * columns as f32);
    let (dy, dx) = (b.y * rows as f32 - ay, b.x * columns as f32 - ax);
    let norm = dy.hypot(dx) + 1e-5;
    let (uy, ux) = (dy / norm, dx / norm);
    let mut sum = 0.0;
    for t in 0..INTEGRAL_SAMPLES {
        let progress = t as f32 / (INTEGRAL_SAMPLES - 1) as f32;
        let (y, x) = (ay + progress * dy, ax + progress * dx);
        if y < 0.0 || x < 0.0 || y >= rows as f32 || x >= columns as f32 {
            continue;
        }
        let cell = y as usize * columns + x as usize;
        sum += field.0[cell] * uy + field.1[cell] * ux;
    }
    sum / INTEGRAL_SAMPLES as f32
}

/// Pairs (a, b), best score first, each a and each b at most once, scores >= `threshold`.
fn match_greedy(mut scores: Vec<(f32, usize, usize)>, threshold: f32) -> Vec<(usize, usize)> {
    scores.retain(|s| s.0 >= threshold);
    scores.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (_, a, b) in scores {
        if pairs.iter().all(|&(pa, pb)| pa != a && pb != b) {
            pairs.push((a, b));
        }
    }
    pairs
}

/// The connected groups of peaks: per group, the peak index of each keypoint (if any).
/// Every peak not matched to anything is a group of its own.
fn group(
    peaks: &[Vec<Peak>],
    links: &[(usize, usize)],
    matches: &[Vec<(usize, usize)>],
) -> Vec<Vec<Option<usize>>> {
    let mut seen: Vec<Vec<bool>> = peaks.iter().map(|p| vec![false; p.len()]).collect();
    let mut groups = Vec::new();
    for (part, part_peaks) in peaks.iter().enumerate() {
        for start in 0..part_peaks.len() {
            if seen[part][start] {
                continue;
            }
            let mut members = vec![None; peaks.len()];
            let mut stack = vec![(part, start)];
            seen[part][start] = true;
            while let Some((c, m)) = stack.pop() {
                members[c].get_or_insert(m);
                for (&(a, b), pairs) in links.iter().zip(matches) {
                    for &(pa, pb) in pairs {
                        let next = if (a, pa) == (c, m) {
                            (b, pb)
                        } else if (b, pb) == (c, m) {
                            (a, pa)
                        } else {
                            continue;
                        };
                        if !seen[next.0][next.1] {
                            seen[next.0][next.1] = true;
                            stack.push(next);
                        }
                    }
                }
            }
            groups.push(members);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{self, Env};

    /// A map with Gaussian bumps (row, column, height) of width 1.5 cells.
    fn bumps(height: usize, width: usize, at: &[(f32, f32, f32)]) -> Vec<f32> {
        let mut plane = vec![0.0; height * width];
        for i in 0..height {
            for j in 0..width {
                for &(y, x, h) in at {
                    let d2 = (i as f32 - y).powi(2) + (j as f32 - x).powi(2);
                    plane[i * width + j] += h * (-d2 / (2.0 * 1.5 * 1.5)).exp();
                }
            }
        }
        plane
    }

    #[test]
    fn peaks_are_window_maxima_above_the_threshold_refined_to_sub_cells() {
        // Two bumps, one between cells; a weak one under the threshold.
        let plane = bumps(
            20,
            30,
            &[(5.0, 5.0, 0.9), (12.0, 20.5, 0.8), (15.0, 5.0, 0.05)],
        );
        let peaks = find_peaks(&plane, 20, 30, 0.1);
        assert_eq!(peaks.len(), 2, "{peaks:?}");
        assert!((peaks[0].y * 20.0 - 5.5).abs() < 1e-3, "{peaks:?}");
        assert!((peaks[0].x * 30.0 - 5.5).abs() < 1e-3, "{peaks:?}");
        assert!((peaks[0].score - 0.9).abs() < 1e-6);
        // Between columns 20 and 21: one peak, at 20, refined towards the true centre
        // (20.5, reported + 0.5) from its own 20.5.
        let x = peaks[1].x * 30.0;
        assert!(x > 20.6 && x < 21.0, "{peaks:?}");
        // A plateau is one peak per window, not none.
        let flat = vec![0.5; 9];
        assert_eq!(find_peaks(&flat, 3, 3, 0.1).len(), 1);
    }

    #[test]
    fn line_integral_rewards_segments_along_the_field() {
        // A field pointing right (+x) everywhere.
        let (rows, columns) = (10, 10);
        let fy = vec![0.0; rows * columns];
        let fx = vec![1.0; rows * columns];
        let peak = |y: f32, x: f32| Peak { y, x, score: 1.0 };
        let along = line_integral(
            (&fy, &fx),
            (rows, columns),
            &peak(0.5, 0.1),
            &peak(0.5, 0.9),
        );
        let against = line_integral(
            (&fy, &fx),
            (rows, columns),
            &peak(0.5, 0.9),
            &peak(0.5, 0.1),
        );
        let across = line_integral(
            (&fy, &fx),
            (rows, columns),
            &peak(0.1, 0.5),
            &peak(0.9, 0.5),
        );
        assert!((along - 1.0).abs() < 1e-3, "{along}");
        assert!((against + 1.0).abs() < 1e-3, "{against}");
        assert!(across.abs() < 1e-3, "{across}");
    }

    #[test]
    fn greedy_matching_takes_the_best_pairs_once() {
        let scores = vec![(0.9, 0, 1), (0.8, 0, 0), (0.7, 1, 0), (0.05, 1, 1)];
        assert_eq!(match_greedy(scores, 0.1), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn groups_follow_the_matches() {
        let p = Peak {
            y: 0.0,
            x: 0.0,
            score: 1.0,
        };
        // Three parts, links 0-1 and 1-2; two people; part 2 has an extra lone peak.
        let peaks = vec![vec![p, p], vec![p, p], vec![p, p, p]];
        let links = [(0, 1), (1, 2)];
        let matches = vec![vec![(0, 1), (1, 0)], vec![(1, 0), (0, 2)]];
        let groups = group(&peaks, &links, &matches);
        assert_eq!(
            groups,
            vec![
                vec![Some(0), Some(1), Some(0)],
                vec![Some(1), Some(0), Some(2)],
                vec![None, None, Some(1)],
            ]
        );
    }

    #[test]
    fn the_known_topologies() {
        assert_eq!(topology(18).unwrap().names[17], "neck");
        assert_eq!(topology(21).unwrap().links.len(), 20);
        assert!(topology(17)
            .unwrap_err()
            .to_string()
            .contains("17 keypoint maps"));
    }

    /// tests/data/jetson/pose-body.onnx and pose-hand.onnx (tools/make-test-models): maps
    /// with two people (hands), the first at the picture's top left, drawn from the mean
    /// input colour so the normalisation is on the path too.
    #[test]
    fn decodes_jetson_style_files_end_to_end() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        for (file, parts) in [("pose-body.onnx", 18), ("pose-hand.onnx", 21)] {
            settings.pose.model.network = testing::data(&format!("jetson/{file}"));
            let mut task = crate::vision::pose::build(&settings, &env.context()).unwrap();
            let frame = Frame::from_rgb(448, 336, vec![124; 448 * 336 * 3]).unwrap();
            task.process(&frame, &settings).unwrap();
            let result = task.result();
            let people = result.as_array().unwrap();
            assert_eq!(people.len(), 2, "{file}: {result}");
            for person in people {
                assert_eq!(
                    person["keypoints"].as_array().unwrap().len(),
                    parts,
                    "{file}"
                );
            }
            // Person 1 stands left of person 2 all along; their names follow the topology.
            let x = |p: usize, k: usize| people[p]["keypoints"][k]["x"].as_f64().unwrap();
            assert!(
                (0..parts).all(|k| x(0, k) < 224.0 && x(1, k) > 224.0),
                "{result}"
            );
            let first = &people[0]["keypoints"][0];
            assert_eq!(first["name"], if parts == 18 { "nose" } else { "palm" });
            let mut drawn = frame.clone();
            task.draw(&mut drawn, &settings);
            assert_ne!(drawn, frame);
            testing::save_annotated(&drawn, &file.replace(".onnx", ".png"));
            // A grey picture far from the mean colour: the maps fade under the threshold.
            let dark = Frame::from_rgb(448, 336, vec![0; 448 * 336 * 3]).unwrap();
            task.process(&dark, &settings).unwrap();
            assert_eq!(task.result(), serde_json::json!([]), "{file}");
        }
    }
}
