//! Image classification: the whole frame through an ImageNet-style classifier, softmax,
//! smoothed across frames, the best class captioned top-left like jetson-inference's imagenet.

use super::jetson::{IMAGENET_MEAN, IMAGENET_STD};
use super::preprocess::{InputSpec, Layout};
use super::{custom_layers, label_of, overlay, resolve, score_json, Context, Network, Task};
use crate::engine::{Engine, Io};
use crate::media::Frame;
use crate::settings::Settings;
use serde_json::{json, Value as Json};

/// jetson-inference's imageNet convention for custom ONNX files (its `train.py` exports):
/// 224x224 RGB, NCHW, ImageNet mean and std on 0..255 pixels.
const CUSTOM_INPUT: &str = "input_0";
const CUSTOM_OUTPUT: &str = "output_0";
const CUSTOM_SIZE: u32 = 224;

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    Ok(Box::new(Classifier::load(settings, ctx)?))
}

pub struct Classifier {
    engine: Box<dyn Engine>,
    input: InputSpec,
    labels: Vec<String>,
    /// Class probabilities, averaged over frames by `output_smoothing`.
    probabilities: Vec<f32>,
    /// The best class and its probability, when it reached the threshold.
    shown: Option<(usize, f32)>,
}

impl Classifier {
    pub fn load(settings: &Settings, ctx: &Context) -> anyhow::Result<Classifier> {
        let section = &settings.classification.model;
        let network = resolve(&section.network, ctx.catalog)?;
        let labels = network.labels(section, ctx.catalog)?;
        let (input, name, outputs, path) = match network {
            Network::Catalog(entry, path) => (
                InputSpec::of(entry)?,
                entry.input.clone(),
                entry.outputs.clone(),
                path,
            ),
            Network::File(path) => {
                let input = InputSpec::stretched(
                    (CUSTOM_SIZE, CUSTOM_SIZE),
                    Layout::Nchw,
                    IMAGENET_MEAN,
                    IMAGENET_STD,
                );
                let (name, outputs) = custom_layers(section, CUSTOM_INPUT, &[CUSTOM_OUTPUT]);
                (input, name, outputs, path)
            }
        };
        let engine = ctx.load_picture_model(&path, &input, (name, outputs), Io::Frames)?;
        Ok(Classifier {
            engine,
            input,
            labels: labels.iter().map(|l| readable(l).to_owned()).collect(),
            probabilities: Vec::new(),
            shown: None,
        })
    }

    #[cfg(test)]
    #[cfg(test)]
    /// The `k` most probable classes, best first, as (class, probability).
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        let mut ranked: Vec<(usize, f32)> =
            self.probabilities.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k);
        ranked
    }

    /// Folds this frame's probabilities into the running ones: `smoothing` is the weight
    /// of the past.
    fn smooth(&mut self, current: &[f32], smoothing: f32) {
        let past = smoothing.clamp(0.0, 1.0);
        if self.probabilities.len() != current.len() || past == 0.0 {
            self.probabilities.clear();
            self.probabilities.extend_from_slice(current);
            return;
        }
        for (p, &c) in self.probabilities.iter_mut().zip(current) {
            *p = past * *p + (1.0 - past) * c;
        }
    }
}

impl Task for Classifier {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let outputs = self.input.run(&mut *self.engine, frame)?;
        let logits = outputs
            .first()
            .ok_or_else(|| anyhow::anyhow!("the classifier gave no output"))?;
        let mut probabilities = logits.as_f32().into_owned();
        softmax(&mut probabilities);
        let settings = &settings.classification;
        self.smooth(&probabilities, settings.output_smoothing);
        self.shown = self
            .probabilities
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|&(_, p)| p >= settings.confidence_threshold);
        Ok(())
    }

    fn draw(&self, frame: &mut Frame, _settings: &Settings) {
        if let Some((class, probability)) = self.shown {
            let caption = format!(
                "{:.1}% {}",
                probability * 100.0,
                label_of(&self.labels, class)
            );
            let margin = 4 * overlay::scale_for(frame) as i32;
            overlay::label(frame, margin, margin, &caption, [0, 0, 0]);
        }
    }

    fn result(&self) -> Json {
        match self.shown {
            Some((class, probability)) => json!({
                "label": label_of(&self.labels, class),
                "class_id": class,
                "confidence": score_json(probability),
            }),
            None => Json::Null,
        }
    }
}

/// Turns logits into probabilities, in place.
fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// A label as people read it: jetson-inference's ImageNet label files start each line with
/// its WordNet id ("n01440764 tench, Tinca tinca"); that goes.
fn readable(label: &str) -> &str {
    match label.split_once(' ') {
        Some((id, rest))
            if id.len() == 9
                && id.starts_with('n')
                && id[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.trim()
        }
        _ => label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing;

    #[test]
    fn imagenet_ids_are_left_out_of_labels() {
        assert_eq!(
            readable("n01440764 tench, Tinca tinca"),
            "tench, Tinca tinca"
        );
        assert_eq!(readable("bald eagle"), "bald eagle");
        assert_eq!(readable("n0 thing"), "n0 thing");
    }

    #[test]
    fn classifies_the_eagle_like_the_reference() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        let mut classifier = Classifier::load(&settings, &env.context()).unwrap();
        let eagle = testing::picture("eagle");
        settings.classification.confidence_threshold = 0.2;
        classifier.process(&eagle, &settings).unwrap();
        let reference = testing::reference()["classification"]["eagle"].clone();
        let top = classifier.top(5);
        eprintln!("eagle top-5 {top:?}\nreference {reference}");
        for want in reference.as_array().unwrap().iter().take(3) {
            let (id, p) = (
                want[0].as_u64().unwrap() as usize,
                want[2].as_f64().unwrap(),
            );
            let got = top
                .iter()
                .find(|t| t.0 == id)
                .expect("reference class in the top 5");
            assert!((f64::from(got.1) - p).abs() < 0.05, "{want} vs {got:?}");
        }
        assert!(top[..3].iter().any(|t| t.0 == 22 || t.0 == 21), "{top:?}");
        let result = classifier.result();
        assert_eq!(result["class_id"], top[0].0);
        assert_eq!(result["label"], classifier.labels[top[0].0]);

        let mut annotated = eagle.clone();
        classifier.draw(&mut annotated, &settings);
        testing::save_annotated(&annotated, "eagle-classification.png");
        assert_ne!(annotated, eagle);

        // Above the best probability: nothing shown, nothing drawn.
        settings.classification.confidence_threshold = 0.99;
        classifier.process(&eagle, &settings).unwrap();
        assert_eq!(classifier.result(), Json::Null);
        let mut untouched = eagle.clone();
        classifier.draw(&mut untouched, &settings);
        assert_eq!(untouched, eagle);
    }

    #[test]
    fn smoothing_weighs_the_past() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        let mut classifier = Classifier::load(&settings, &env.context()).unwrap();
        let (eagle, dog) = (testing::picture("eagle"), testing::picture("dog"));
        classifier.process(&eagle, &settings).unwrap();
        let eagle_p = classifier.probabilities[22];
        settings.classification.output_smoothing = 0.75;
        classifier.process(&dog, &settings).unwrap();
        let mut dog_only = Classifier::load(&settings, &env.context()).unwrap();
        dog_only.process(&dog, &settings).unwrap();
        // Bald eagle after one dog frame: 3/4 of the eagle's, 1/4 of the dog's.
        let want = 0.75 * eagle_p + 0.25 * dog_only.probabilities[22];
        assert!((classifier.probabilities[22] - want).abs() < 1e-5);
        assert_eq!(dog_only.top(1)[0].0, 235, "German Shepherd Dog");
    }

    #[test]
    fn custom_files_follow_the_jetson_convention() {
        let env = testing::Env::new();
        let mut settings = env.settings.clone();
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.txt");
        std::fs::write(&labels, "n00000001 first thing\nsecond\nthird\n").unwrap();
        settings.classification.model.network = testing::data("jetson-classifier.onnx");
        settings.classification.model.labels = labels.display().to_string();
        settings.classification.confidence_threshold = 0.0;
        let mut classifier = Classifier::load(&settings, &env.context()).unwrap();
        assert_eq!(classifier.input.shape(), vec![1, 3, 224, 224]);
        // The tiny model's logits are the means of the normalised channels
        // (tools/models/jetson_fixtures.py): on a red frame, class 0 wins.
        let red = Frame::from_rgb(64, 48, [255, 0, 0].repeat(64 * 48)).unwrap();
        classifier.process(&red, &settings).unwrap();
        let mut expected: Vec<f32> = (0..3)
            .map(|c| ([255.0, 0.0, 0.0][c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
            .collect();
        softmax(&mut expected);
        let result = classifier.result();
        assert_eq!(result["label"], "first thing", "{result}");
        let confidence = result["confidence"].as_f64().unwrap();
        assert!(
            (confidence - f64::from(expected[0])).abs() < 1e-3,
            "{result}"
        );
        // The section names other tensors: the file has no such output.
        settings.classification.model.output_layer = "nope".into();
        assert!(Classifier::load(&settings, &env.context()).is_err());
    }
}
