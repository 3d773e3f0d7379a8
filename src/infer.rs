//! `visiond infer`: the enabled models on still pictures, annotated pictures to a folder and
//! one JSON object a picture on stdout (the seed's imagenet/detectnet/posenet in one).

use crate::engine;
use crate::media::Frame;
use crate::settings::store::{located, resolve_overrides, with_overrides};
use crate::settings::{load, schema::MODEL_SECTIONS};
use crate::vision::{self, catalog::Catalog, Task};
use anyhow::Context;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

pub struct Request<'a> {
    pub config: &'a Path,
    pub overrides: &'a [(&'static str, &'static str, Json)],
    pub images: &'a [PathBuf],
    pub out: Option<&'a Path>,
    pub json: bool,
}

pub fn run(request: &Request) -> anyhow::Result<()> {
    let settings = settings_for(request.config, request.overrides)?;
    let catalog = Catalog::locate()?;
    let (loader, choice) = engine::choose(&settings.engine);
    eprintln!("engine: {} ({})", choice.backend, choice.reason);
    let ctx = vision::Context {
        catalog: &catalog,
        loader: loader.as_ref(),
    };
    let mut tasks: Vec<(&str, Box<dyn Task>)> = Vec::new();
    for section in vision::DRAW_ORDER {
        if settings.model(section).is_some_and(|m| m.enabled) {
            let task = vision::build(section, &settings, &ctx)
                .with_context(|| format!("{section} model"))?;
            tasks.push((section, task));
        }
    }
    anyhow::ensure!(
        !tasks.is_empty(),
        "no model is enabled: pass e.g. --detection nanodet, or enable one in the config"
    );
    if let Some(out) = request.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    for path in request.images {
        let mut frame = Frame::load(path)?;
        let mut results = json!({"image": path.display().to_string(), "width": frame.width, "height": frame.height});
        for (section, task) in &mut tasks {
            for _ in 0..task.frames_needed(&settings) {
                task.process(&frame, &settings)
                    .with_context(|| format!("{section} on {}", path.display()))?;
            }
            results[*section] = task.result();
        }
        let drawn: Vec<&dyn Task> = tasks.iter().map(|(_, task)| task.as_ref()).collect();
        vision::draw(&drawn, &mut frame, &settings);
        if let Some(out) = request.out {
            let name = path.file_name().context("a picture path has a file name")?;
            frame.save(&out.join(name))?;
        }
        if request.json {
            println!("{results}");
        }
    }
    Ok(())
}

/// The config file's settings (defaults when the file does not exist) with the flags over them.
fn settings_for(
    config: &Path,
    overrides: &[(&str, &str, Json)],
) -> anyhow::Result<crate::settings::Settings> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config.display())),
    };
    let values = load::parse(&text)
        .map_err(|problems| anyhow::anyhow!(located(config, &problems).join("\n")))?;
    let overrides = resolve_overrides(overrides).map_err(|e| anyhow::anyhow!(e))?;
    debug_assert!(MODEL_SECTIONS
        .iter()
        .all(|s| vision::DRAW_ORDER.contains(s)));
    Ok(with_overrides(&values, &overrides).to_settings())
}

/// `visiond models`: the catalog, with whether each file is present.
pub fn list_models() -> anyhow::Result<()> {
    let catalog = Catalog::locate()?;
    println!("{:<26} {:<16} {:<30} present", "name", "task", "file");
    for entry in &catalog.entries {
        let present = if catalog.path_of(entry).is_file() {
            "yes"
        } else {
            "no"
        };
        println!(
            "{:<26} {:<16} {:<30} {present}",
            entry.name, entry.task, entry.file
        );
    }
    println!("models folder: {}", catalog.dir.display());
    Ok(())
}
