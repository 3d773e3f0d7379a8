//! H.264 in Annex B form (NAL units after `00 00 01` start codes): splitting a byte stream
//! into access units, the frame rate an SPS declares, and decoding to RGB with Cisco's
//! openh264 (built from its bundled source, so no system codec is needed).

use super::Frame;
use anyhow::Context;
use h264_reader::nal::{sps::SeqParameterSet, Nal, RefNal};
use std::io::Read;
use std::time::Duration;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;

/// Decodes access units (one picture's NAL units, start codes included) to RGB frames.
pub struct Decoder {
    decoder: openh264::decoder::Decoder,
}

impl Decoder {
    pub fn new() -> anyhow::Result<Decoder> {
        Ok(Decoder {
            decoder: openh264::decoder::Decoder::new().context("cannot start the H.264 decoder")?,
        })
    }

    /// The picture `access_unit` completes, if any (parameter sets alone give none).
    pub fn decode(&mut self, access_unit: &[u8]) -> anyhow::Result<Option<Frame>> {
        use openh264::formats::YUVSource;
        let Some(yuv) = self
            .decoder
            .decode(access_unit)
            .context("the H.264 stream does not decode")?
        else {
            return Ok(None);
        };
        let (width, height) = yuv.dimensions();
        let mut rgb = vec![0; width * height * 3];
        yuv.write_rgb8(&mut rgb);
        Frame::from_rgb(width as u32, height as u32, rgb).map(Some)
    }
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |header| header & 0x1f)
}

/// A slice that starts a new picture: `first_mb_in_slice` is 0, i.e. its ue(v) code is the
/// single bit `1` right after the NAL header.
fn starts_picture(nal: &[u8]) -> bool {
    matches!(nal_type(nal), NAL_SLICE | NAL_IDR) && nal.get(1).is_some_and(|b| b & 0x80 != 0)
}

fn is_slice(nal: &[u8]) -> bool {
    matches!(nal_type(nal), NAL_SLICE | NAL_IDR)
}

/// Reads an Annex B elementary stream (`.h264`) access unit by access unit, a chunk of the
/// file at a time, so files of any length play in constant memory.
pub struct AccessUnits<R> {
    reader: R,
    buffer: Vec<u8>,
    eof: bool,
    /// The access unit being gathered, and whether it holds a slice yet.
    unit: Vec<u8>,
    has_slice: bool,
    /// Frame duration from the first SPS with VUI timing.
    pub frame_duration: Option<Duration>,
}

impl<R: Read> AccessUnits<R> {
    pub fn new(reader: R) -> AccessUnits<R> {
        AccessUnits {
            reader,
            buffer: Vec::new(),
            eof: false,
            unit: Vec::new(),
            has_slice: false,
            frame_duration: None,
        }
    }

    /// The next NAL unit without its start code; `None` at the end of the stream.
    fn next_nal(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            let first = find_start_code(&self.buffer, 0);
            if let Some((start, len)) = first {
                if let Some((next, _)) = find_start_code(&self.buffer, start + len) {
                    let nal = trim_trailing_zeros(&self.buffer[start + len..next]).to_vec();
                    self.buffer.drain(..next);
                    return Ok(Some(nal));
                }
            }
            if self.eof {
                let rest = std::mem::take(&mut self.buffer);
                return Ok(first
                    .map(|(start, len)| trim_trailing_zeros(&rest[start + len..]).to_vec())
                    .filter(|nal| !nal.is_empty()));
            }
            let mut chunk = [0; 64 * 1024];
            let n = self.reader.read(&mut chunk)?;
            self.eof = n == 0;
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next access unit in Annex B form; `None` at the end of the stream.
    pub fn next_unit(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        while let Some(nal) = self.next_nal()? {
            if nal_type(&nal) == NAL_SPS && self.frame_duration.is_none() {
                self.frame_duration = frame_duration(&nal);
            }
            // A new picture starts at its first slice, or at anything but a slice after one.
            let done = self.has_slice && (starts_picture(&nal) || !is_slice(&nal));
            let finished = done.then(|| std::mem::take(&mut self.unit));
            if done {
                self.has_slice = false;
            }
            self.has_slice |= is_slice(&nal);
            self.unit.extend_from_slice(&START_CODE);
            self.unit.extend_from_slice(&nal);
            if finished.is_some() {
                return Ok(finished);
            }
        }
        let last = std::mem::take(&mut self.unit);
        self.has_slice = false;
        Ok((!last.is_empty()).then_some(last))
    }
}

/// Where the first start code at or after `from` is, and its length (3 or 4 bytes).
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let at = data.get(from..)?.windows(3).position(|w| w == [0, 0, 1])? + from;
    Some(if at > from && data[at - 1] == 0 {
        (at - 1, 4)
    } else {
        (at, 3)
    })
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &nal[..end]
}

/// The frame duration an SPS's VUI timing declares (`2 * num_units_in_tick / time_scale`
/// for progressive frames); `None` when it has no timing.
pub fn frame_duration(sps_nal: &[u8]) -> Option<Duration> {
    let sps = SeqParameterSet::from_bits(RefNal::new(sps_nal, &[], true).rbsp_bits()).ok()?;
    let timing = sps.vui_parameters?.timing_info?;
    (timing.time_scale > 0 && timing.num_units_in_tick > 0).then(|| {
        Duration::from_secs_f64(2.0 * timing.num_units_in_tick as f64 / timing.time_scale as f64)
    })
}

/// Length-prefixed NAL units (MP4 samples, `length_size` bytes each) in Annex B form.
pub fn annex_b_from_lengths(data: &[u8], length_size: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut rest = data;
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= length_size, "a NAL unit length is cut short");
        let (length, tail) = rest.split_at(length_size);
        let length = length.iter().fold(0usize, |n, &b| n << 8 | b as usize);
        anyhow::ensure!(tail.len() >= length, "a NAL unit is cut short");
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(&tail[..length]);
        rest = &tail[length..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // x264's SPS for 64x64 baseline at 25 frames a second (VUI tick 1, time scale 50).
    const SPS_25FPS: [u8; 23] = [
        0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x04, 0x26, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
        0x00, 0x03, 0x00, 0xc8, 0x3c, 0x48, 0x99, 0x20,
    ];

    /// Hands out one byte a read, so NAL units always straddle reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            out[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn access_units_split_at_each_new_picture() {
        // SPS, PPS, IDR slice 0, IDR slice 1 | AUD, P slice 0 | P slice 0
        let stream: Vec<u8> = [
            &[0, 0, 0, 1, 0x67, 1][..],
            &[0, 0, 1, 0x68, 2],
            &[0, 0, 1, 0x65, 0x80],
            &[0, 0, 1, 0x65, 0x40],
            &[0, 0, 0, 1, 0x09, 0xf0],
            &[0, 0, 1, 0x41, 0x80],
            &[0, 0, 1, 0x41, 0x80, 0, 0],
        ]
        .concat();
        let mut units = AccessUnits::new(Trickle(&stream));
        let mut seen = Vec::new();
        while let Some(unit) = units.next_unit().unwrap() {
            seen.push(unit);
        }
        assert_eq!(
            seen,
            [
                vec![
                    0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 0x80, 0, 0, 0, 1,
                    0x65, 0x40
                ],
                vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41, 0x80],
                vec![0, 0, 0, 1, 0x41, 0x80],
            ]
        );
    }

    #[test]
    fn lengths_become_start_codes() {
        let sample = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
        assert_eq!(
            annex_b_from_lengths(&sample, 4).unwrap(),
            [0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x06]
        );
        assert!(annex_b_from_lengths(&[0, 0, 0, 9, 1], 4).is_err());
    }

    #[test]
    fn the_sps_gives_the_frame_rate() {
        assert_eq!(frame_duration(&SPS_25FPS), Some(Duration::from_millis(40)));
        assert_eq!(frame_duration(&[0x67, 0x42]), None);
    }
}
