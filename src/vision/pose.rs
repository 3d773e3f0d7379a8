//! Pose (section "pose"): MoveNet single- and multi-person from the catalog; a catalog
//! hand-pose network runs the MediaPipe hand pipeline (`hands`); a user's ONNX file is
//! read with jetson-inference's trt_pose convention (`trt_pose`).

use super::keypoints::{Keypoint, Pose, Skeleton, COCO_LINKS};
use super::preprocess::{InputSpec, Region};
use super::{catalog::Entry, hands, resolve, trt_pose, Context, Network, Task};
use crate::engine::{Engine, Io, Tensor};
use crate::media::Frame;
use crate::settings::Settings;
use anyhow::Context as _;
use serde_json::Value as Json;
use std::path::Path;

/// MoveNet multipose: a person scoring under this is not reported (MoveNet's own demos
/// and the reference decoder use 0.2).
const MIN_PERSON_SCORE: f32 = 0.2;

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    let network = &settings.pose.model.network;
    match resolve(network, ctx.catalog)? {
        Network::Catalog(entry, path) => match entry.task.as_str() {
            "pose" => Ok(Box::new(MoveNet::load(entry, &path, ctx)?)),
            "hand-pose" => hands::build(entry, &path, ctx),
            task => anyhow::bail!("{network:?} is a {task} model, not a pose model"),
        },
        Network::File(path) => trt_pose::build(&path, &settings.pose.model, ctx),
    }
}

struct MoveNet {
    engine: Box<dyn Engine>,
    input: InputSpec,
    skeleton: Skeleton,
    poses: Vec<Pose>,
}

impl MoveNet {
    fn load(entry: &Entry, path: &Path, ctx: &Context) -> anyhow::Result<MoveNet> {
        let input = InputSpec::of(entry)?;
        let engine = ctx.load_picture_model(
            path,
            &input,
            (entry.input.clone(), entry.outputs.clone()),
            Io::Frames,
        )?;
        Ok(MoveNet {
            engine,
            input,
            skeleton: Skeleton {
                names: ctx.catalog.labels(entry)?,
                links: COCO_LINKS.to_vec(),
            },
            poses: Vec::new(),
        })
    }
}

impl Task for MoveNet {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let outputs = self.input.run(&mut *self.engine, frame)?;
        let output = outputs.first().context("MoveNet gave no output")?;
        let region = self.input.region((frame.width, frame.height));
        self.poses = decode(output, region, settings.pose.confidence_threshold)?;
        Ok(())
    }

    fn draw(&self, frame: &mut Frame, settings: &Settings) {
        self.skeleton
            .draw(frame, &self.poses, &settings.pose.overlay);
    }

    fn result(&self) -> Json {
        self.skeleton.result(&self.poses)
    }
}

/// MoveNet's output in frame pixels. Its coordinates are normalised over the input, which
/// shows `region` of the frame.
/// - single person [1,1,K,3]: per keypoint (y, x, score);
/// - multipose [1,N,K*3+5]: per person K x (y, x, score), then ymin, xmin, ymax, xmax,
///   and the person's score.
fn decode(output: &Tensor, region: Region, threshold: f32) -> anyhow::Result<Vec<Pose>> {
    let data = output.as_f32();
    match *output.shape.as_slice() {
        [1, 1, _, 3] => Ok(vec![Pose::thresholded(keypoints(&data, region), threshold)]),
        [1, _, row] if row > 5 && (row - 5) % 3 == 0 => {
            let people = data
                .chunks_exact(row)
                .filter(|p| p[row - 1] >= MIN_PERSON_SCORE);
            Ok(people
                .map(|p| {
                    let b = &p[row - 5..row - 1];
                    let (top_left, bottom_right) =
                        (region.point(b[1], b[0]), region.point(b[3], b[2]));
                    Pose {
                        bbox: Some([top_left[0], top_left[1], bottom_right[0], bottom_right[1]]),
                        ..Pose::thresholded(keypoints(&p[..row - 5], region), threshold)
                    }
                })
                .collect())
        }
        _ => anyhow::bail!("MoveNet output shape {:?} is unknown", output.shape),
    }
}

/// (y, x, score) triples, normalised over the input, as keypoints in frame pixels.
fn keypoints(triples: &[f32], region: Region) -> impl Iterator<Item = Keypoint> + '_ {
    triples.chunks_exact(3).map(move |k| {
        let [x, y] = region.point(k[1], k[0]);
        Keypoint {
            x,
            y,
            confidence: k[2],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{self, Env};

    #[test]
    fn decodes_single_and_multi_person_layouts() {
        let single = Tensor::f32(vec![1, 1, 2, 3], vec![0.5, 0.25, 0.9, 0.1, 0.1, 0.05]);
        let poses = decode(&single, Region([0.0, 0.0, 200.0, 100.0]), 0.1).unwrap();
        assert_eq!(poses.len(), 1);
        let nose = poses[0].keypoints[0].unwrap();
        assert_eq!((nose.x, nose.y, nose.confidence), (50.0, 50.0, 0.9));
        assert_eq!(poses[0].keypoints[1], None);
        // Two people of one keypoint each (3 + 5 values): the second scores too low.
        let multi = Tensor::f32(
            vec![1, 2, 8],
            vec![
                0.5, 0.5, 0.8, 0.1, 0.2, 0.9, 0.6, 0.7, //
                0.5, 0.5, 0.8, 0.0, 0.0, 1.0, 1.0, 0.1,
            ],
        );
        let poses = decode(&multi, Region([0.0, 0.0, 100.0, 200.0]), 0.1).unwrap();
        assert_eq!(poses.len(), 1);
        let b = poses[0].bbox.unwrap();
        assert!(
            (b[0] - 20.0).abs() < 1e-4 && (b[1] - 20.0).abs() < 1e-4,
            "{b:?}"
        );
        assert!(
            (b[2] - 60.0).abs() < 1e-4 && (b[3] - 180.0).abs() < 1e-4,
            "{b:?}"
        );
        assert!(decode(
            &Tensor::f32(vec![1, 4], vec![0.0; 4]),
            Region([0.0, 0.0, 1.0, 1.0]),
            0.1
        )
        .is_err());
    }

    /// The person of person.jpg stands in this box (x1, y1, x2, y2), as in verify.py.
    const PERSON_BOX: [f64; 4] = [180.0, 95.0, 290.0, 385.0];

    fn inside(point: &Json, margin: f64) -> bool {
        let (x, y) = (point["x"].as_f64().unwrap(), point["y"].as_f64().unwrap());
        let [x1, y1, x2, y2] = PERSON_BOX;
        x >= x1 - margin && x <= x2 + margin && y >= y1 - margin && y <= y2 + margin
    }

    #[test]
    fn movenet_finds_the_person_like_the_reference() {
        let env = Env::new();
        let reference = testing::reference();
        let picture = testing::picture("person");
        for network in ["movenet-lightning", "movenet-thunder"] {
            let mut settings = env.settings.clone();
            settings.pose.model.network = network.into();
            settings.pose.confidence_threshold = 0.0;
            let mut task = build(&settings, &env.context()).unwrap();
            task.process(&picture, &settings).unwrap();
            let result = task.result();
            let found = result[0]["keypoints"].as_array().unwrap();
            assert_eq!(found.len(), 17, "{network}: {result}");
            let expected = reference["pose"][network].as_array().unwrap();
            for (got, want) in found.iter().zip(expected) {
                // want: [name, y, x, score]
                assert_eq!(got["name"], want[0], "{network}");
                let dx = got["x"].as_f64().unwrap() - want[2].as_f64().unwrap();
                let dy = got["y"].as_f64().unwrap() - want[1].as_f64().unwrap();
                let ds = got["confidence"].as_f64().unwrap() - want[3].as_f64().unwrap();
                assert!(
                    dx.abs() < 2.0 && dy.abs() < 2.0,
                    "{network} {got} vs {want}"
                );
                assert!(ds.abs() < 0.03, "{network} {got} vs {want}");
                assert!(inside(got, 0.0), "{network}: {got} outside the person");
            }
            // The threshold applies live: at 0.4 only the surer keypoints stay.
            settings.pose.confidence_threshold = 0.4;
            task.process(&picture, &settings).unwrap();
            let kept = task.result()[0]["keypoints"].as_array().unwrap().len();
            let surer = expected
                .iter()
                .filter(|k| k[3].as_f64().unwrap() >= 0.4)
                .count();
            assert!(
                kept.abs_diff(surer) <= 2 && kept < 17,
                "{network}: {kept} vs {surer}"
            );
        }
    }

    #[test]
    fn multipose_boxes_the_person_and_draws_on_the_picture() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.pose.overlay = vec!["keypoints".into(), "links".into(), "boxes".into()];
        let entry = env.catalog.get("movenet-multipose").unwrap();
        let path = env.catalog.path_of(entry);
        let mut task = MoveNet::load(entry, &path, &env.context()).unwrap();
        let mut picture = testing::picture("person");
        task.process(&picture, &settings).unwrap();
        let result = task.result();
        let people = result.as_array().unwrap();
        assert_eq!(people.len(), 1, "{result}");
        let keypoints = people[0]["keypoints"].as_array().unwrap();
        assert!(keypoints.len() >= 12, "{result}");
        assert!(keypoints.iter().all(|k| inside(k, 10.0)), "{result}");
        let reference = testing::reference();
        let want = &reference["pose"]["movenet-multipose"][0]["box_yxyx"];
        let [x1, y1, x2, y2] = task.poses[0].bbox.unwrap();
        for (got, want) in [
            (y1, &want[0]),
            (x1, &want[1]),
            (y2, &want[2]),
            (x2, &want[3]),
        ] {
            assert!(
                (f64::from(got) - want.as_f64().unwrap()).abs() < 3.0,
                "{got} vs {want}"
            );
        }
        let before = picture.clone();
        task.draw(&mut picture, &settings);
        assert_ne!(picture, before);
        testing::save_annotated(&picture, "pose-multipose-person.png");
    }

    #[test]
    fn draws_lightning_keypoints_and_links_on_person_jpg() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.pose.overlay = vec!["keypoints".into(), "links".into(), "boxes".into()];
        let mut task = build(&settings, &env.context()).unwrap();
        let mut picture = testing::picture("person");
        task.process(&picture, &settings).unwrap();
        task.draw(&mut picture, &settings);
        testing::save_annotated(&picture, "pose-lightning-person.png");
        // Nothing is drawn far from the person (the horse and the dog stay untouched).
        let untouched = testing::picture("person");
        let changed_outside = (0..picture.height)
            .flat_map(|y| (0..picture.width).map(move |x| (x, y)))
            .filter(|&(x, y)| picture.pixel(x, y) != untouched.pixel(x, y))
            .filter(|&(x, y)| !(170..=300).contains(&x) || !(85..=395).contains(&y))
            .count();
        assert_eq!(changed_outside, 0);
    }

    #[test]
    fn refuses_a_network_of_another_task() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.pose.model.network = "nanodet".into();
        let error = build(&settings, &env.context()).err().unwrap().to_string();
        assert!(error.contains("detection model"), "{error}");
    }
}
