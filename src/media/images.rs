//! The `images:` source: JPEG and PNG pictures from a folder, a glob (`/srv/*.jpg`) or one
//! file, shown in name order at `input.fps`, fitted into the frame size, looping or once.

use super::source::{Ended, Pacer, Source};
use super::Frame;
use crate::settings::typed::Input;
use crate::vision::preprocess;
use anyhow::Context;
use std::path::{Path, PathBuf};

pub struct Images {
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
    width: u32,
    height: u32,
    pacer: Pacer,
}

impl Images {
    pub fn open(pattern: &str, input: &Input) -> anyhow::Result<Images> {
        let files = list(pattern)?;
        anyhow::ensure!(
            !files.is_empty(),
            "no JPEG or PNG pictures match {pattern:?}"
        );
        Ok(Images {
            files,
            next: 0,
            looping: input.looping,
            width: input.width,
            height: input.height,
            pacer: Pacer::new(input.fps),
        })
    }
}

impl Source for Images {
    fn next_frame(&mut self) -> anyhow::Result<Frame> {
        if self.next == self.files.len() {
            if !self.looping {
                let why = "the last picture was shown (input.loop = false)";
                return Err(Ended(why.into()).into());
            }
            self.next = 0;
        }
        let picture = Frame::load(&self.files[self.next])?;
        self.next += 1;
        self.pacer.wait();
        Ok(fit(&picture, self.width, self.height))
    }
}

/// The picture scaled to fit inside `width` x `height`, centred on black, aspect kept.
pub fn fit(picture: &Frame, width: u32, height: u32) -> Frame {
    let scale = (width as f32 / picture.width as f32).min(height as f32 / picture.height as f32);
    let (w, h) = (
        ((picture.width as f32 * scale).round() as u32).clamp(1, width),
        ((picture.height as f32 * scale).round() as u32).clamp(1, height),
    );
    let scaled = preprocess::resize(picture, w, h);
    let mut frame = Frame::new(width, height);
    let (x0, y0) = (((width - w) / 2) as usize, ((height - h) / 2) as usize);
    let row = w as usize * 3;
    for (y, line) in scaled.rgb.chunks_exact(row).enumerate() {
        let start = ((y0 + y) * width as usize + x0) * 3;
        frame.rgb[start..start + row].copy_from_slice(line);
    }
    frame
}

fn is_picture(path: &Path) -> bool {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(extension.as_deref(), Some("jpg" | "jpeg" | "png"))
}

/// Pictures a folder holds, a glob matches (`*` and `?` in the file name), or the one file.
fn list(pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let (dir, name_pattern) = if path.is_dir() {
        (path, "*")
    } else {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("no file name in the pattern")?;
        (
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            name,
        )
    };
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            is_picture(p)
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| wildcard(name_pattern, n))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Shell-style match of `*` (any run) and `?` (any one character).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(wildcard("*.jpg", "dog.jpg"));
        assert!(wildcard("d?g*", "dog.jpg"));
        assert!(!wildcard("*.png", "dog.jpg"));
        assert!(wildcard("*", "x"));
    }

    #[test]
    fn lists_the_darknet_pictures_in_order_and_fits_them() {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let all = list(data).unwrap();
        let names: Vec<_> = all
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "dog.jpg",
                "eagle.jpg",
                "giraffe.jpg",
                "horses.jpg",
                "person.jpg"
            ]
        );
        assert_eq!(list(&format!("{data}/d*.jpg")).unwrap().len(), 1);
        let dog = Frame::load(&all[0]).unwrap();
        let fitted = fit(&dog, 1280, 720);
        assert_eq!((fitted.width, fitted.height), (1280, 720));
        // 768x576 scaled to 960x720: black bars of 160 pixels each side.
        assert_eq!(fitted.pixel(100, 360), [0, 0, 0]);
        assert_ne!(fitted.pixel(640, 360), [0, 0, 0]);
    }
}
