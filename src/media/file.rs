//! The `file:` source: an H.264 video file, MP4 (`.mp4`, `.m4v`, `.mov`) or an Annex B
//! elementary stream (anything else, `.h264` / `.264` usually), decoded and shown at the
//! file's own rate, looping or once (`input.loop`).

use super::h264::{AccessUnits, Decoder};
use super::mp4::Mp4Video;
use super::source::{Ended, Pacer, Source};
use super::Frame;
use crate::settings::typed::Input;
use anyhow::Context;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the access units come from.
enum Demuxer {
    Mp4(Box<Mp4Video>),
    /// Paced by the SPS's VUI timing when it has some, else by `input.fps`.
    Elementary(AccessUnits<BufReader<File>>),
}

impl Demuxer {
    fn open(path: &Path) -> anyhow::Result<Demuxer> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(extension.as_deref(), Some("mp4" | "m4v" | "mov")) {
            return Ok(Demuxer::Mp4(Box::new(Mp4Video::open(path)?)));
        }
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Demuxer::Elementary(AccessUnits::new(BufReader::new(file))))
    }

    /// The next access unit and, when the file says, how long it is shown.
    fn next_unit(&mut self) -> anyhow::Result<Option<(Vec<u8>, Option<Duration>)>> {
        Ok(match self {
            Demuxer::Mp4(video) => video.next_unit()?.map(|(unit, shown)| (unit, Some(shown))),
            Demuxer::Elementary(units) => {
                units.next_unit()?.map(|unit| (unit, units.frame_duration))
            }
        })
    }
}

pub struct VideoFile {
    path: PathBuf,
    demuxer: Demuxer,
    decoder: Decoder,
    looping: bool,
    /// Pictures decoded in this pass over the file: none in a whole pass is an error.
    decoded: u64,
    fallback: Duration,
    pacer: Pacer,
}

impl VideoFile {
    pub fn open(path: &str, input: &Input) -> anyhow::Result<VideoFile> {
        let path = PathBuf::from(path);
        Ok(VideoFile {
            demuxer: Demuxer::open(&path)?,
            path,
            decoder: Decoder::new()?,
            looping: input.looping,
            decoded: 0,
            fallback: Duration::from_secs_f64(1.0 / input.fps.max(1) as f64),
            pacer: Pacer::new(input.fps),
        })
    }
}

impl Source for VideoFile {
    fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            let Some((unit, shown)) = self.demuxer.next_unit()? else {
                anyhow::ensure!(
                    self.decoded > 0,
                    "{} holds no H.264 picture",
                    self.path.display()
                );
                if !self.looping {
                    return Err(
                        Ended("the file played to its end (input.loop = false)".into()).into(),
                    );
                }
                self.demuxer = Demuxer::open(&self.path)?;
                self.decoded = 0;
                continue;
            };
            if let Some(frame) = self.decoder.decode(&unit)? {
                self.decoded += 1;
                self.pacer.wait_for(shown.unwrap_or(self.fallback));
                return Ok(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five red 64x48 pictures at `fps`, made by ffmpeg (tools/setup installs it).
    fn red_video(path: &Path, fps: u32) {
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg(format!("color=c=red:size=64x48:rate={fps}"))
            .args(["-frames:v", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
    }

    #[test]
    fn mp4_and_elementary_streams_decode_at_their_own_rate() {
        let dir = tempfile::tempdir().unwrap();
        for (name, fps) in [("red.mp4", 10), ("red.h264", 25), ("red.264", 30)] {
            let path = dir.path().join(name);
            red_video(&path, fps);
            let mut demuxer = Demuxer::open(&path).unwrap();
            let mut decoder = Decoder::new().unwrap();
            let mut pictures = 0;
            while let Some((unit, shown)) = demuxer.next_unit().unwrap() {
                let shown = shown.unwrap().as_secs_f64();
                assert!((shown - 1.0 / fps as f64).abs() < 1e-3, "{name}: {shown}");
                if let Some(frame) = decoder.decode(&unit).unwrap() {
                    pictures += 1;
                    assert_eq!((frame.width, frame.height), (64, 48));
                    let [r, g, b] = frame.pixel(32, 24);
                    assert!(r > 200 && g < 60 && b < 60, "{name}: {:?}", [r, g, b]);
                }
            }
            assert_eq!(pictures, 5, "{name}");
        }
    }
}
