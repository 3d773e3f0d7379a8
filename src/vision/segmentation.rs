//! Semantic segmentation (section "segmentation"): MediaPipe selfie segmentation from the
//! catalog (background / person), or a user's jetson-inference FCN-ResNet18 file with
//! segNet's convention. Drawn as class colours over the frame ("overlay") or alone
//! ("mask"), the class map stretched bilinearly ("linear") or by nearest cell ("point").

use super::jetson;
use super::mask::{self, Filter, Grid};
use super::preprocess::InputSpec;
use super::scores::argmax;
use super::{catalog, custom_layers, overlay, resolve, score_json, Context, Network, Task};
use crate::engine::{Engine, Tensor};
use crate::media::Frame;
use crate::settings::{typed::Model, Settings};
use anyhow::Context as _;
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

pub fn build(settings: &Settings, ctx: &Context) -> anyhow::Result<Box<dyn Task>> {
    let model = &settings.segmentation.model;
    let network = resolve(&model.network, ctx.catalog)?;
    let task = match &network {
        Network::Catalog(entry, path) => {
            anyhow::ensure!(
                entry.task == "segmentation",
                "{:?} is a {} model, not a segmentation model",
                entry.name,
                entry.task
            );
            let input = InputSpec::of(entry)?;
            let (name, outputs) = (entry.input.clone(), entry.outputs.clone());
            let engine = ctx.load_picture_model(path, &input, name, outputs)?;
            let labels = network.labels(model, ctx.catalog)?;
            Segmentation::new(
                engine,
                input,
                Classes {
                    labels,
                    colors: Vec::new(),
                },
            )
        }
        Network::File(path) => fcn(path, model, ctx)?,
    };
    Ok(Box::new(task))
}

/// jetson-inference's FCN-ResNet18 convention: input "input_0" NCHW at the size the file
/// declares, ImageNet normalisation; output "output_0" [1,C,h,w] class scores. As segNet
/// finds them, the class names are in `classes.txt` beside the model (or the section's
/// `labels` file), their colours in `colors.txt` beside that (or beside the model).
fn fcn(path: &Path, model: &Model, ctx: &Context) -> anyhow::Result<Segmentation> {
    let (name, outputs) = custom_layers(model, "", &[]);
    let input = jetson::imagenet_input(path, &name, &[1, 3, 320, 320])?;
    let engine = ctx.load_picture_model(path, &input, name, outputs)?;
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
    Ok(Segmentation::new(engine, input, Classes { labels, colors }))
}

/// A class's colour; `alpha` when colors.txt gives one other than 255, which then holds
/// in overlay mode instead of `overlay_alpha` (segNet's rule).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClassColor {
    rgb: [u8; 3],
    alpha: Option<u8>,
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

/// The class of every output cell.
#[derive(Debug, Clone, PartialEq)]
struct ClassMap {
    width: usize,
    height: usize,
    ids: Vec<u8>,
}

impl ClassMap {
    /// From a person probability ([1,H,W,1] or [1,1,H,W]): person (1) above one half.
    fn from_probability(output: &Tensor) -> anyhow::Result<ClassMap> {
        let grid = mask::probability_grid(output)?;
        Ok(ClassMap {
            width: grid.width,
            height: grid.height,
            ids: grid.cells.iter().map(|c| u8::from(c[0] > 0.5)).collect(),
        })
    }

    /// From class scores [1,C,H,W]: the best class of each cell.
    fn from_scores(output: &Tensor) -> anyhow::Result<ClassMap> {
        let &[1, classes, height, width] = output.shape.as_slice() else {
            anyhow::bail!("class scores of shape {:?} are not [1,C,H,W]", output.shape);
        };
        anyhow::ensure!(
            (1..=256).contains(&classes),
            "{classes} classes: 1 to 256 are supported"
        );
        let scores = output.as_f32();
        let plane = height * width;
        let ids = (0..plane)
            .map(|i| {
                let cell = (0..classes).map(|c| scores[c * plane + i]);
                argmax(cell).map_or(0, |(id, _)| id as u8)
            })
            .collect();
        Ok(ClassMap { width, height, ids })
    }

    /// Each class present and its share of the cells (of the frame: it is stretched whole).
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
    classes: Classes,
    map: Option<ClassMap>,
}

impl Segmentation {
    fn new(engine: Box<dyn Engine>, input: InputSpec, classes: Classes) -> Segmentation {
        Segmentation {
            engine,
            input,
            classes,
            map: None,
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
    fn process(&mut self, frame: &Frame, _settings: &Settings) -> anyhow::Result<()> {
        let outputs = self.engine.run(&self.input.tensor(frame))?;
        let output = outputs.first().context("the model gave no output")?;
        // One channel is a person probability (selfie); several are class scores (FCN).
        let one_channel = matches!(output.shape.as_slice(), [1, _, _, 1] | [1, 1, _, _]);
        self.map = Some(if one_channel {
            ClassMap::from_probability(output)?
        } else {
            ClassMap::from_scores(output)?
        });
        Ok(())
    }

    fn draw(&self, frame: &mut Frame, settings: &Settings) {
        let Some(map) = &self.map else {
            return;
        };
        let s = &settings.segmentation;
        let mask_only = s.visualize == "mask";
        let palette = self.palette(map, mask_only, s.overlay_alpha);
        let grid = Grid {
            width: map.width,
            height: map.height,
            cells: map.ids.iter().map(|&id| palette[usize::from(id)]).collect(),
        };
        let filter = Filter::parse(&s.filter_mode);
        grid.paint(frame, filter, |_, _, pixel, [r, g, b, a]| {
            if a > 0.0 {
                for (p, c) in pixel.iter_mut().zip([r, g, b]) {
                    *p = mask::to_byte(f32::from(*p) * (1.0 - a) + c);
                }
            }
        });
    }

    fn result(&self) -> Json {
        let Some(map) = &self.map else {
            return Json::Null;
        };
        let mut classes = Map::new();
        for (id, share) in map.shares() {
            classes.insert(
                super::label_of(&self.classes.labels, id).into_owned(),
                score_json(share),
            );
        }
        serde_json::json!({ "classes": classes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::testing::{self, Env};

    fn selfie(env: &Env) -> Segmentation {
        let entry = env.catalog.get("selfie-segmentation").unwrap();
        let input = InputSpec::of(entry).unwrap();
        let (name, outputs) = (entry.input.clone(), entry.outputs.clone());
        let path = env.catalog.path_of(entry);
        let engine = env
            .context()
            .load_picture_model(&path, &input, name, outputs);
        let labels = env.catalog.labels(entry).unwrap();
        let classes = Classes {
            labels,
            colors: Vec::new(),
        };
        Segmentation::new(engine.unwrap(), input, classes)
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
        task.draw(&mut overlaid, &settings);
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
        task.draw(&mut masked, &settings);
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
        assert!((share("red") - 0.5).abs() < 0.01, "{result}");
        assert!((share("green") - 0.25).abs() < 0.01, "{result}");
        assert!((share("background") - 0.25).abs() < 0.01, "{result}");
        // colors.txt: background "0 0 0 0" stays clear in overlay mode; red at overlay_alpha
        // (drawn on white to see both).
        let mut drawn = Frame::from_rgb(300, 200, vec![255; 300 * 200 * 3]).unwrap();
        task.draw(&mut drawn, &settings);
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
        task.draw(&mut drawn, &settings);
        assert_eq!(drawn.pixel(250, 180), [0, 255, 0]);
        // Linear filtering blends where classes meet (x = 150 at y = 150: red | green).
        let edge = drawn.pixel(150, 150);
        assert!(edge[0] > 0 && edge[1] > 0, "{edge:?}");
    }

    #[test]
    fn class_maps_from_scores_and_colour_files() {
        // Two classes over 1x3 cells: class 1 wins the middle cell.
        let scores = Tensor::f32(vec![1, 2, 1, 3], vec![1.0, 0.0, 1.0, 0.0, 2.0, 0.5]);
        let map = ClassMap::from_scores(&scores).unwrap();
        assert_eq!(map.ids, vec![0, 1, 0]);
        let shares = map.shares();
        assert_eq!(shares.len(), 2);
        assert!((shares[0].1 - 2.0 / 3.0).abs() < 1e-6);
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
