//! The model catalog (`models/catalog.toml`): what each shipped model is, where its file is,
//! and how its input is laid out and normalised.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One `[[model]]` of the catalog. Decoder-specific keys (strides, anchors, ...) stay in `extra`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub task: String,
    pub file: String,
    #[serde(default)]
    pub sha256: String,
    pub input: String,
    pub input_shape: Vec<usize>,
    /// nchw | nhwc | ncthw
    pub layout: String,
    /// f32 | i32
    pub dtype: String,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// How a frame is fitted to the input: stretch (default) | letterbox | pad-bottom-right |
    /// centre-crop.
    #[serde(default)]
    pub fit: String,
    /// The pixel value (0-255, before normalisation) of the padding that fit adds.
    #[serde(default)]
    pub pad_value: f32,
    #[serde(default)]
    pub color: String,
    pub outputs: Vec<String>,
    #[serde(default)]
    pub labels: String,
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub license_file: String,
    #[serde(default)]
    pub notice_file: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub notes: String,
    #[serde(flatten)]
    pub extra: toml::Table,
}

#[derive(Deserialize)]
struct File {
    model: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

impl Catalog {
    /// Finds and reads the catalog: `$VISIOND_MODELS`, then beside the installed binary
    /// (`../share/visiond/models`), then `/usr/share/visiond/models`, then `./models`.
    pub fn locate() -> anyhow::Result<Catalog> {
        let candidates = Catalog::search_path();
        for dir in &candidates {
            if dir.join("catalog.toml").is_file() {
                return Catalog::open(dir);
            }
        }
        anyhow::bail!(
            "no models/catalog.toml in {:?} (set VISIOND_MODELS)",
            candidates
        )
    }

    fn search_path() -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = std::env::var_os("VISIOND_MODELS") {
            dirs.push(PathBuf::from(dir));
        }
        if let Some(bin) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
        {
            dirs.push(bin.join("../share/visiond/models"));
        }
        dirs.push(PathBuf::from("/usr/share/visiond/models"));
        dirs.push(PathBuf::from("models"));
        dirs
    }

    pub fn open(dir: &Path) -> anyhow::Result<Catalog> {
        let path = dir.join("catalog.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: File = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid catalog", path.display()))?;
        Ok(Catalog {
            dir: dir.to_owned(),
            entries: file.model,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub fn path_of(&self, entry: &Entry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// The entry's labels, one a line; empty when it has none.
    pub fn labels(&self, entry: &Entry) -> anyhow::Result<Vec<String>> {
        if entry.labels.is_empty() {
            return Ok(Vec::new());
        }
        read_labels(&self.dir.join(&entry.labels))
    }

    /// Catalog names whose task is one of `tasks`, for the page's network choices.
    pub fn names_for(&self, tasks: &[&str]) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| tasks.contains(&e.task.as_str()))
            .map(|e| e.name.clone())
            .collect()
    }
}

/// Reads a labels file: one label a line, blank lines at the end ignored.
pub fn read_labels(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read labels {}", path.display()))?;
    let mut labels: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    while labels.last().is_some_and(String::is_empty) {
        labels.pop();
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_lists_every_task_with_files_and_labels() {
        let catalog =
            Catalog::open(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))).unwrap();
        for task in [
            "classification",
            "detection",
            "pose",
            "segmentation",
            "action",
            "hand-detection",
            "hand-pose",
        ] {
            assert!(!catalog.names_for(&[task]).is_empty(), "{task}");
        }
        for entry in &catalog.entries {
            assert!(
                catalog.path_of(entry).is_file(),
                "{} is missing",
                entry.file
            );
            assert_eq!(entry.sha256.len(), 64, "{}", entry.name);
        }
        let imagenet = catalog
            .labels(catalog.get("efficientnet-lite0").unwrap())
            .unwrap();
        assert_eq!(imagenet.len(), 1000);
        assert_eq!(
            catalog
                .labels(catalog.get("nanodet").unwrap())
                .unwrap()
                .len(),
            80
        );
    }
}
