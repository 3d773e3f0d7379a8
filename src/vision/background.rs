//! Background replacement (section "background"): a person mask (MediaPipe selfie
//! segmentation from the catalog, or a user's jetson-inference U2-Net file, min-max
//! normalised as backgroundNet does) keeps the person and repaints the rest: black, a
//! colour, the frame blurred, or a picture. The mask's probability gives soft edges.

use super::jetson;
use super::layer::{Backdrop, Layer};
use super::mask::{self, Grid};
use super::preprocess::{resize, InputSpec};
use super::{custom_layers, resolve, score_json, Context, Network, Task};
use crate::engine::{Engine, Io};
use crate::media::Frame;
use crate::settings::Settings;
use anyhow::Context as _;
use serde_json::{json, Value as Json};
use std::path::Path;

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    let model = &settings.background.model;
    let (path, input, input_name, outputs, min_max) = match resolve(&model.network, ctx.catalog)? {
        Network::Catalog(entry, path) => {
            anyhow::ensure!(
                entry.task == "segmentation" && entry.outputs.len() == 1,
                "{:?} is not a person segmentation model",
                entry.name
            );
            let input = InputSpec::of(entry)?;
            (
                path,
                input,
                entry.input.clone(),
                entry.outputs.clone(),
                false,
            )
        }
        // backgroundNet's U2-Net: input_0 [1,3,320,320] NCHW ImageNet, output_0 [1,1,320,320].
        Network::File(path) => {
            let (name, outputs) = custom_layers(model, "", &[]);
            let input = jetson::imagenet_input(&path, &name, &[1, 3, 320, 320])?;
            (path, input, name, outputs, true)
        }
    };
    let engine = ctx.load_picture_model(&path, &input, (input_name, outputs), Io::Frames)?;
    Ok(Box::new(Background {
        engine,
        input,
        min_max,
        mask: None,
        picture: Picture::default(),
    }))
}

struct Background {
    engine: Box<dyn Engine>,
    input: InputSpec,
    /// U2-Net's output is not a probability: stretch it to 0..1 first.
    min_max: bool,
    mask: Option<Grid<1>>,
    picture: Picture,
}

impl Task for Background {
    fn process(&mut self, frame: &Frame, settings: &Settings) -> anyhow::Result<()> {
        let outputs = self.input.run(&mut *self.engine, frame)?;
        let output = outputs.first().context("the model gave no output")?;
        let mut grid = mask::probability_grid(output)?;
        if self.min_max {
            normalise(&mut grid);
        }
        self.mask = Some(grid);
        if settings.background.mode == "image" {
            self.picture
                .update(&settings.background.image, frame.width, frame.height);
        }
        Ok(())
    }

    fn layer(&self, settings: &Settings) -> Option<Layer<'_>> {
        let b = &settings.background;
        let backdrop = match b.mode.as_str() {
            "color" => Backdrop::Flat(parse_color(&b.color)),
            "blur" => Backdrop::Blurred,
            // No picture (yet, or it cannot be read): black.
            "image" => self
                .picture
                .stretched()
                .map_or(Backdrop::Flat([0; 3]), Backdrop::Picture),
            _ => Backdrop::Flat([0; 3]),
        };
        Some(Layer::Backdrop {
            mask: self.mask.as_ref()?,
            backdrop,
        })
    }

    fn result(&self) -> Json {
        let Some(mask) = &self.mask else {
            return Json::Null;
        };
        let person = mask::share_above_half(mask);
        json!({ "classes": {
            "background": score_json(1.0 - person),
            "person": score_json(person),
        } })
    }
}

/// Stretches the values to 0..1 (backgroundNet's normalisation of U2-Net's output).
fn normalise(grid: &mut Grid<1>) {
    let (low, high) = grid
        .cells
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), c| {
            (l.min(c[0]), h.max(c[0]))
        });
    let range = high - low;
    for cell in &mut grid.cells {
        cell[0] = if range > 0.0 {
            (cell[0] - low) / range
        } else {
            0.0
        };
    }
}

/// "#rrggbb" (the setting is validated) as RGB; black if it is not.
fn parse_color(text: &str) -> [u8; 3] {
    let hex = text.trim_start_matches('#');
    let channel = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    match (hex.len(), channel(0), channel(2), channel(4)) {
        (6, Some(r), Some(g), Some(b)) => [r, g, b],
        _ => [0, 0, 0],
    }
}

/// The replacement picture: loaded once per path, stretched once per frame size.
#[derive(Default)]
struct Picture {
    path: String,
    loaded: Option<Frame>,
    stretched: Option<Frame>,
}

impl Picture {
    fn update(&mut self, path: &str, width: u32, height: u32) {
        if path != self.path {
            self.path = path.to_owned();
            self.stretched = None;
            self.loaded = match Frame::load(Path::new(path)) {
                Ok(picture) => Some(picture),
                Err(error) => {
                    // Shown once per path; the background goes black meanwhile.
                    tracing::warn!("background image: {error:#}");
                    None
                }
            };
        }
        let fits = |f: &Frame| (f.width, f.height) == (width, height);
        if let (Some(loaded), false) = (&self.loaded, self.stretched.as_ref().is_some_and(fits)) {
            self.stretched = Some(resize(loaded, width, height));
        }
    }

    /// The picture at the size of the last frame `update` was given.
    fn stretched(&self) -> Option<&Frame> {
        self.stretched.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{self, Env};

    /// Pixels of person.jpg on the person (shoulders, hips, knees of the reference pose).
    const ON_PERSON: [(u32, u32); 6] = [
        (210, 155),
        (240, 158),
        (218, 230),
        (242, 232),
        (228, 288),
        (238, 290),
    ];
    /// Pixels far from the person: the horse, the dog, the ground, the sky.
    const OFF_PERSON: [(u32, u32); 5] = [(500, 200), (450, 330), (80, 380), (20, 20), (600, 60)];

    /// person.jpg through the task in `mode`, saved as background-<name>.png.
    fn replaced(name: &str, mode: &str, tweak: impl Fn(&mut Settings)) -> (Frame, Json) {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.background.mode = mode.into();
        tweak(&mut settings);
        let mut task = build(&settings, &env.context()).unwrap();
        let mut picture = testing::picture("person");
        task.process(&picture, &settings).unwrap();
        crate::vision::draw(&[task.as_ref()], &mut picture, &settings);
        testing::save_annotated(&picture, &format!("background-{name}.png"));
        (picture, task.result())
    }

    #[test]
    fn black_mode_blackens_all_but_the_person() {
        let original = testing::picture("person");
        let (picture, result) = replaced("black", "black", |_| ());
        for (x, y) in ON_PERSON {
            assert_eq!(picture.pixel(x, y), original.pixel(x, y), "({x}, {y})");
        }
        for (x, y) in OFF_PERSON {
            assert_eq!(picture.pixel(x, y), [0, 0, 0], "({x}, {y})");
        }
        // Outside the person's box nearly everything is black; inside, much is kept.
        let (mut outside, mut black_outside, mut kept_inside, mut inside) = (0, 0, 0, 0);
        for y in 0..picture.height {
            for x in 0..picture.width {
                let in_box = (180..290).contains(&x) && (95..385).contains(&y);
                let black = picture.pixel(x, y) == [0, 0, 0];
                if in_box {
                    inside += 1;
                    kept_inside += usize::from(picture.pixel(x, y) == original.pixel(x, y));
                } else {
                    outside += 1;
                    black_outside += usize::from(black);
                }
            }
        }
        assert!(
            black_outside as f64 / outside as f64 > 0.99,
            "{black_outside} of {outside}"
        );
        assert!(
            kept_inside as f64 / inside as f64 > 0.3,
            "{kept_inside} of {inside}"
        );
        let person = result["classes"]["person"].as_f64().unwrap();
        assert!((person - 0.0511).abs() < 0.01, "{result}");
    }

    #[test]
    fn color_blur_and_image_modes_fill_the_background() {
        let original = testing::picture("person");
        let (picture, _) = replaced("color", "color", |s| s.background.color = "#102030".into());
        assert_eq!(picture.pixel(500, 200), [0x10, 0x20, 0x30]);
        assert_eq!(
            picture.pixel(ON_PERSON[0].0, ON_PERSON[0].1),
            original.pixel(ON_PERSON[0].0, ON_PERSON[0].1)
        );

        let (picture, _) = replaced("blur", "blur", |_| ());
        // Blurred: close to the local average, far from black, smoother than the original.
        let roughness = |f: &Frame| -> u64 {
            (400..600)
                .map(|x| u64::from(f.pixel(x, 250)[1].abs_diff(f.pixel(x + 1, 250)[1])))
                .sum()
        };
        assert!(
            roughness(&picture) * 3 < roughness(&original),
            "{} vs {}",
            roughness(&picture),
            roughness(&original)
        );
        assert!(picture.pixel(500, 200).iter().any(|&v| v > 40));
        assert_eq!(
            picture.pixel(ON_PERSON[2].0, ON_PERSON[2].1),
            original.pixel(ON_PERSON[2].0, ON_PERSON[2].1)
        );

        let dog = testing::data("dog.jpg");
        let (picture, _) = replaced("image", "image", |s| s.background.image = dog.clone());
        let stretched = resize(&Frame::load(Path::new(&dog)).unwrap(), 640, 424);
        for (x, y) in OFF_PERSON {
            assert_eq!(picture.pixel(x, y), stretched.pixel(x, y), "({x}, {y})");
        }
        // A missing picture leaves the background black rather than failing the task.
        let (picture, _) = replaced("image-missing", "image", |s| {
            s.background.image = "/nonexistent.png".into()
        });
        assert_eq!(picture.pixel(500, 200), [0, 0, 0]);
    }

    /// tests/data/jetson/u2net.onnx (tools/make-test-models): red - green per pixel,
    /// unnormalised, so red is the foreground after min-max normalisation.
    #[test]
    fn a_jetson_u2net_file_keeps_the_red_square() {
        let env = Env::new();
        let mut settings = env.settings.clone();
        settings.background.model.network = testing::data("jetson/u2net.onnx");
        settings.background.mode = "color".into();
        settings.background.color = "#0000ff".into();
        let mut task = build(&settings, &env.context()).unwrap();
        let mut frame = Frame::from_rgb(400, 200, vec![90; 400 * 200 * 3]).unwrap();
        for y in 50..150 {
            let row = (y * 400 + 100) * 3;
            for pixel in frame.rgb[row..row + 100 * 3].chunks_exact_mut(3) {
                pixel.copy_from_slice(&[255, 0, 0]);
            }
        }
        task.process(&frame, &settings).unwrap();
        let result = task.result();
        let person = result["classes"]["person"].as_f64().unwrap();
        assert!((person - 0.125).abs() < 0.01, "{result}");
        crate::vision::draw(&[task.as_ref()], &mut frame, &settings);
        assert_eq!(frame.pixel(150, 100), [255, 0, 0]);
        assert_eq!(frame.pixel(300, 100), [0, 0, 255]);
        assert_eq!(frame.pixel(20, 20), [0, 0, 255]);
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_color("#00b140"), [0x00, 0xb1, 0x40]);
        assert_eq!(parse_color("nonsense"), [0, 0, 0]);
        let mut grid = Grid {
            width: 3,
            height: 1,
            cells: vec![[2.0], [4.0], [3.0]],
        };
        normalise(&mut grid);
        assert_eq!(grid.cells, vec![[0.0], [1.0], [0.5]]);
    }
}
