//! MP4 demuxing: the first H.264 track's samples in decoding order, as Annex B access units
//! with the duration each is shown for (sample duration over the track's timescale).

use super::h264;
use anyhow::Context;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

pub struct Mp4Video {
    reader: ::mp4::Mp4Reader<BufReader<File>>,
    track: u32,
    samples: u32,
    /// 1-based, as MP4 counts samples.
    next: u32,
    timescale: u32,
    length_size: usize,
    /// SPS and PPS from the sample entry, in Annex B form: put before each key frame, so
    /// the decoder can start (or start over) there.
    parameter_sets: Vec<u8>,
}

impl Mp4Video {
    pub fn open(path: &Path) -> anyhow::Result<Mp4Video> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata()?.len();
        let reader = ::mp4::Mp4Reader::read_header(BufReader::new(file), size)
            .with_context(|| format!("{} is not a readable MP4 file", path.display()))?;
        let track = reader
            .tracks()
            .values()
            .filter(|t| matches!(t.media_type(), Ok(::mp4::MediaType::H264)))
            .min_by_key(|t| t.track_id())
            .with_context(|| format!("{} has no H.264 video track", path.display()))?;
        let avc1 = track
            .trak
            .mdia
            .minf
            .stbl
            .stsd
            .avc1
            .as_ref()
            .context("no avc1 entry")?;
        let mut parameter_sets = Vec::new();
        for nal in avc1
            .avcc
            .sequence_parameter_sets
            .iter()
            .chain(&avc1.avcc.picture_parameter_sets)
        {
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(&nal.bytes);
        }
        Ok(Mp4Video {
            track: track.track_id(),
            samples: track.sample_count(),
            next: 1,
            timescale: track.timescale().max(1),
            length_size: avc1.avcc.length_size_minus_one as usize + 1,
            parameter_sets,
            reader,
        })
    }

    /// The next access unit and how long it is shown; `None` after the last sample.
    pub fn next_unit(&mut self) -> anyhow::Result<Option<(Vec<u8>, Duration)>> {
        if self.next > self.samples {
            return Ok(None);
        }
        let sample = self
            .reader
            .read_sample(self.track, self.next)
            .with_context(|| format!("cannot read sample {}", self.next))?
            .with_context(|| format!("sample {} is missing", self.next))?;
        self.next += 1;
        let mut unit = if sample.is_sync {
            self.parameter_sets.clone()
        } else {
            Vec::new()
        };
        unit.extend(h264::annex_b_from_lengths(&sample.bytes, self.length_size)?);
        let shown = Duration::from_secs_f64(sample.duration as f64 / self.timescale as f64);
        Ok(Some((unit, shown)))
    }
}
