//! Action recognition (section "action"): a video classifier over a sliding window of the
//! last T sampled frames: I3D Kinetics-400 from the catalog, or a user's jetson-inference
//! resnet18-kinetics file with actionNet's convention. One frame is sampled, then
//! `skip_frames` are skipped; the model runs whenever the window is full and a new frame
//! came in. The caption sits under the classification's. Where the model takes its input
//! on the GPU, the window is a ring of pre-processed frames there (`gpu`).

#[cfg(feature = "gpu")]
mod gpu;

use super::jetson;
use super::preprocess::{InputSpec, Layout};
use super::scores::{argmax, softmax};
use super::{label_of, overlay, resolve, score_json, Context, Network, Task};
use crate::engine::{DType, Engine, Io, ModelInput, Tensor};
use crate::media::Frame;
use crate::settings::Settings;
use anyhow::Context as _;
use serde_json::{json, Value as Json};
use std::collections::VecDeque;

/// actionNet's normalisation for resnet18-kinetics, in pixel units: 255 * [0.43216,
/// 0.394666, 0.37645] and 255 * [0.22803, 0.22145, 0.216989].
const KINETICS_MEAN: [f32; 3] = [110.2008, 100.63983, 95.99475];
const KINETICS_STD: [f32; 3] = [58.14765, 56.46975, 55.332195];

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    let model = &settings.action.model;
    let network = resolve(&model.network, ctx.catalog)?;
    let mut labels = network.labels(model, ctx.catalog)?;
    let (path, clip, name, output) = match network {
        Network::Catalog(entry, path) => {
            anyhow::ensure!(
                entry.task == "action" && entry.layout == "ncthw",
                "{:?} is not an action model (task action, layout ncthw)",
                entry.name
            );
            let output = entry.outputs.first().context("no outputs in the catalog")?;
            let clip = Clip::new(&entry.input_shape, entry.mean, entry.std)?;
            (path, clip, entry.input.clone(), vec![output.clone()])
        }
        // resnet18-kinetics: input "input" [1,3,16,112,112], output "output" [1,400] logits.
        Network::File(path) => {
            let (name, outputs) = super::custom_layers(model, "", &[]);
            let shape = jetson::input_shape(&path, &name, &[1, 3, 16, 112, 112])?;
            if labels.is_empty() {
                if let Some(file) = jetson::beside(&path, "labels.txt") {
                    labels = super::catalog::read_labels(&file)?;
                }
            }
            let clip = Clip::new(&shape, KINETICS_MEAN, KINETICS_STD)?;
            (path, clip, name, outputs)
        }
    };
    let engine = (ctx.loader)(
        &path,
        &ModelInput {
            name,
            shape: clip.shape(),
            dtype: DType::F32,
            outputs: output,
            io: Io::Frames,
        },
    )?;
    Ok(Box::new(Action {
        window: Window::for_engine(&*engine),
        engine,
        clip,
        labels,
        to_skip: 0,
        best: None,
        threshold: settings.action.confidence_threshold,
    }))
}

/// A clip input [1,3,T,H,W]: T frames, each H x W, normalised per channel.
struct Clip {
    frame: InputSpec,
    frames: usize,
}

impl Clip {
    fn new(shape: &[usize], mean: [f32; 3], std: [f32; 3]) -> anyhow::Result<Clip> {
        let &[1, 3, frames, height, width] = shape else {
            anyhow::bail!("input shape {shape:?} is not a clip [1,3,T,H,W]");
        };
        anyhow::ensure!(frames > 0, "a clip of no frames");
        Ok(Clip {
            frame: InputSpec::stretched(
                (u32::try_from(width)?, u32::try_from(height)?),
                Layout::Nchw,
                mean,
                std,
            ),
            frames,
        })
    }

    /// Values in one frame of the clip.
    fn frame_len(&self) -> usize {
        3 * (self.frame.width * self.frame.height) as usize
    }

    fn shape(&self) -> Vec<usize> {
        let f = &self.frame;
        vec![1, 3, self.frames, f.height as usize, f.width as usize]
    }

    /// The window's frames ([1,3,H,W] each, oldest first) as one [1,3,T,H,W] tensor:
    /// channel-major, then time.
    fn tensor(&self, window: &VecDeque<Tensor>) -> Tensor {
        let plane = (self.frame.width * self.frame.height) as usize;
        let mut data = Vec::with_capacity(self.frames * self.frame_len());
        for c in 0..3 {
            for frame in window {
                data.extend_from_slice(&frame.as_f32()[c * plane..(c + 1) * plane]);
            }
        }
        Tensor::f32(self.shape(), data)
    }
}

/// The last sampled frames, each stretched and normalised.
enum Window {
    /// On the host, oldest first.
    Host(VecDeque<Tensor>),
    /// On the GPU, where the model reads its input.
    #[cfg(feature = "gpu")]
    Device(gpu::DeviceWindow),
}

impl Window {
    /// Where `engine` reads its input.
    fn for_engine(engine: &dyn Engine) -> Window {
        #[cfg(feature = "gpu")]
        if engine.placement().input_on_gpu {
            return Window::Device(gpu::DeviceWindow::default());
        }
        let _ = engine;
        Window::Host(VecDeque::new())
    }

    fn len(&self) -> usize {
        match self {
            Window::Host(frames) => frames.len(),
            #[cfg(feature = "gpu")]
            Window::Device(ring) => ring.len(),
        }
    }

    /// Adds `frame` as the newest, dropping the oldest once the window holds the clip.
    #[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
    fn push(&mut self, engine: &mut dyn Engine, clip: &Clip, frame: &Frame) -> anyhow::Result<()> {
        match self {
            Window::Host(frames) => {
                if frames.len() == clip.frames {
                    frames.pop_front();
                }
                frames.push_back(clip.frame.tensor(frame));
                Ok(())
            }
            #[cfg(feature = "gpu")]
            Window::Device(ring) => ring.push(engine, clip, frame),
        }
    }

    /// Runs `engine` on the clip of the window's frames.
    fn run(&self, engine: &mut dyn Engine, clip: &Clip) -> anyhow::Result<Vec<Tensor>> {
        match self {
            Window::Host(frames) => engine.run(&clip.tensor(frames)),
            #[cfg(feature = "gpu")]
            Window::Device(ring) => ring.run(engine, clip),
        }
    }
}

struct Action {
    engine: Box<dyn Engine>,
    clip: Clip,
    labels: Vec<String>,
    window: Window,
    /// Frames still to skip before the next sample.
    to_skip: u32,
    /// The last run's best class and its probability.
    best: Option<(usize, f32)>,
    threshold: f32,
}

impl Task for Action {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        self.threshold = settings.action.confidence_threshold;
        if self.to_skip > 0 {
            self.to_skip -= 1;
            return Ok(());
        }
        self.to_skip = settings.action.skip_frames;
        let outputs = match self.sample(frame) {
            Ok(outputs) => outputs,
            #[cfg(feature = "gpu")]
            Err(e) if matches!(self.window, Window::Device(_)) => {
                tracing::warn!("action: the clip is made on the host from now on: {e:#}");
                self.window = Window::Host(VecDeque::new());
                self.sample(frame)?
            }
            Err(e) => return Err(e),
        };
        let Some(outputs) = outputs else {
            return Ok(());
        };
        let mut probabilities = outputs
            .first()
            .context("the model gave no output")?
            .as_f32()
            .into_owned();
        softmax(&mut probabilities);
        self.best = argmax(probabilities);
        Ok(())
    }

    /// A still picture fills the whole window: one sample, then `skip_frames` skipped, T times.
    fn frames_needed(&self, settings: &Settings) -> usize {
        self.clip.frames * (settings.action.skip_frames as usize + 1)
    }

    fn draw(&self, frame: &mut Frame, _settings: &Settings) {
        let Some((class, probability)) = self.shown() else {
            return;
        };
        let caption = format!(
            "{:.0}% {}",
            probability * 100.0,
            label_of(&self.labels, class)
        );
        // Under the classification caption, which sits a margin from the top left and is
        // as tall as this one.
        let margin = 4 * overlay::scale_for(frame) as i32;
        let (_, height) = overlay::label_size(frame, &caption);
        overlay::label(
            frame,
            margin,
            2 * margin + height as i32,
            &caption,
            [0, 0, 0],
        );
    }

    fn result(&self) -> Json {
        match self.shown() {
            Some((class, probability)) => json!({
                "label": label_of(&self.labels, class),
                "confidence": score_json(probability),
            }),
            None => Json::Null,
        }
    }
}

impl Action {
    /// Adds `frame` to the window, and runs the model on the clip once the window is full.
    fn sample(&mut self, frame: &Frame) -> anyhow::Result<Option<Vec<Tensor>>> {
        self.window.push(&mut *self.engine, &self.clip, frame)?;
        if self.window.len() < self.clip.frames {
            return Ok(None);
        }
        self.window.run(&mut *self.engine, &self.clip).map(Some)
    }

    /// The best class if it is sure enough to show.
    fn shown(&self) -> Option<(usize, f32)> {
        self.best.filter(|&(_, p)| p >= self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{self, Env};

    fn solid(color: [u8; 3]) -> Frame {
        let rgb = color.iter().copied().cycle().take(64 * 48 * 3).collect();
        Frame::from_rgb(64, 48, rgb).unwrap()
    }

    /// The defaults with tests/data/jetson/action.onnx, `skip_frames` and every result shown.
    fn test_model_settings(env: &Env, skip_frames: u32) -> Settings {
        let mut settings = env.settings.clone();
        settings.action.model.network = testing::data("jetson/action.onnx");
        settings.action.skip_frames = skip_frames;
        settings.action.confidence_threshold = 0.0;
        settings
    }

    /// tests/data/jetson/action.onnx (tools/make-test-models): logit 10 is the red of the
    /// window's last frame, 20 the red of its first, 30 a little of all frames' green.
    #[test]
    fn the_window_slides_over_sampled_frames() {
        let env = Env::new();
        let mut settings = test_model_settings(&env, 0);
        let mut task = build(&settings, &env.context()).unwrap();
        // About the mean colour: normalised to nearly 0.
        let grey = solid([110, 100, 96]);
        for _ in 0..15 {
            task.process(&grey, &settings).unwrap();
        }
        assert_eq!(task.result(), Json::Null, "not 16 frames yet");
        task.process(&solid([255, 0, 0]), &settings).unwrap();
        assert_eq!(
            task.result()["label"],
            "class 10",
            "red is the newest frame"
        );
        for _ in 0..14 {
            task.process(&grey, &settings).unwrap();
        }
        assert_eq!(task.result()["label"], "class 0", "red is in the middle");
        task.process(&grey, &settings).unwrap();
        assert_eq!(
            task.result()["label"],
            "class 20",
            "red is the oldest frame"
        );
        task.process(&grey, &settings).unwrap();
        assert_eq!(task.result()["label"], "class 0", "red is out");
        // Softmax over 400 logits: red's normalised value at 10 against about 0.
        let red = (255.0 - KINETICS_MEAN[0]) / KINETICS_STD[0];
        let mut expected = vec![0.0f32; 400];
        expected[10] = red;
        softmax(&mut expected);
        settings.action.skip_frames = 5;
        task.process(&solid([255, 0, 0]), &settings).unwrap();
        let confidence = task.result()["confidence"].as_f64().unwrap();
        assert!(
            (confidence - f64::from(expected[10])).abs() < 1e-3,
            "{confidence}"
        );
        // The threshold applies at once, on a skipped frame without a run.
        settings.action.confidence_threshold = 0.5;
        task.process(&grey, &settings).unwrap();
        assert_eq!(task.result(), Json::Null);
        settings.action.confidence_threshold = 0.01;
        task.process(&grey, &settings).unwrap();
        assert_eq!(task.result()["label"], "class 10");
    }

    #[test]
    fn skip_frames_samples_one_frame_then_skips() {
        let env = Env::new();
        let settings = test_model_settings(&env, 2);
        let mut task = build(&settings, &env.context()).unwrap();
        // What `infer` shows a still picture is enough for a result.
        assert_eq!(task.frames_needed(&settings), 48);
        // 16 samples take 1 + 15 * 3 = 46 frames.
        for _ in 0..45 {
            task.process(&solid([0, 0, 0]), &settings).unwrap();
        }
        assert_eq!(task.result(), Json::Null);
        task.process(&solid([0, 0, 0]), &settings).unwrap();
        assert_ne!(task.result(), Json::Null);
    }

    /// A clip whose GPU path fails goes on from the host, from the frame that failed.
    #[cfg(feature = "gpu")]
    #[test]
    fn a_failing_gpu_path_falls_back_to_the_host() {
        let env = Env::new();
        let settings = test_model_settings(&env, 0);
        let mut task = build(&settings, &env.context_failing_on_gpu()).unwrap();
        let grey = solid([110, 100, 96]);
        task.process(&solid([255, 0, 0]), &settings).unwrap();
        for _ in 0..15 {
            task.process(&grey, &settings).unwrap();
        }
        assert_eq!(
            task.result()["label"],
            "class 20",
            "red is the oldest frame"
        );
    }

    #[test]
    fn i3d_on_a_still_clip_of_horses_gives_the_reference() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.action.skip_frames = 0;
        let mut task = build(&settings, &env.context()).unwrap();
        let mut horses = testing::picture("horses");
        for _ in 0..16 {
            task.process(&horses, &settings).unwrap();
        }
        let result = task.result();
        let want = &testing::reference()["action"]["horses_x16"][0];
        assert_eq!(result["label"], want[0], "{result}");
        let confidence = result["confidence"].as_f64().unwrap();
        assert!(
            (confidence - want[1].as_f64().unwrap()).abs() < 0.05,
            "{result}"
        );
        let before = horses.clone();
        task.draw(&mut horses, &settings);
        testing::save_annotated(&horses, "action-horses.png");
        // The caption sits under the classification line, at the left.
        let scale = overlay::scale_for(&horses);
        let top = 18 * scale;
        let changed = |y: u32| (0..horses.width).any(|x| horses.pixel(x, y) != before.pixel(x, y));
        assert!(!changed(top - 1) && changed(top + 2));
    }
}
