//! The encoder thread: each annotated frame the pipeline publishes is encoded ONCE (H.264
//! constrained baseline, openh264) and handed to every viewer through a broadcast channel,
//! which never blocks: a viewer that lags loses units, not the pipeline's time.

use super::{AccessUnit, Output};
use crate::media::Frame;
use crate::pipeline::status::Shared;
use crate::settings::Store;
use bytes::Bytes;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSource};
use openh264::OpenH264API;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the thread waits for a frame before looking at `stop` again.
const FRAME_WAIT: Duration = Duration::from_millis(100);
/// A periodic keyframe every this many seconds, so a viewer that lost packets recovers
/// even if its keyframe request is lost too.
const KEYFRAME_SECONDS: u32 = 2;

pub fn spawn(
    output: Arc<Output>,
    shared: Arc<Shared>,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("encoder".into())
        .spawn(move || {
            let mut seen = 0;
            let mut encoder: Option<H264> = None;
            while !stop.load(Ordering::Relaxed) {
                let Some((number, frame)) = shared.next_frame(seen, FRAME_WAIT) else {
                    continue;
                };
                seen = number;
                if output.watchers() == 0 {
                    encoder = None; // the next viewer starts a fresh stream with a keyframe
                    continue;
                }
                let settings = store.settings();
                let (bitrate, fps) = (settings.output.bitrate, settings.input.fps);
                if encoder.as_ref().is_none_or(|e| e.bitrate != bitrate) {
                    // A new encoder is how a bitrate change applies: it starts with a keyframe.
                    encoder = H264::new(bitrate, fps)
                        .map_err(|e| tracing::error!("H.264 encoder: {e:#}"))
                        .ok();
                }
                let Some(h264) = encoder.as_mut() else {
                    continue;
                };
                match h264.encode(&frame, output.take_keyframe_request()) {
                    Ok(Some(unit)) => output.send(unit),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("H.264 encoding failed: {e:#}");
                        encoder = None;
                    }
                }
            }
        })
}

/// An openh264 encoder and its picture buffer, kept across frames.
pub struct H264 {
    encoder: Encoder,
    bitrate: u32,
    yuv: Option<YUVBuffer>,
    last: Option<Instant>,
    nominal: Duration,
}

impl H264 {
    pub fn new(bitrate: u32, fps: u32) -> anyhow::Result<H264> {
        let fps = fps.max(1);
        let config = EncoderConfig::new()
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .intra_frame_period(IntraFramePeriod::from_num_frames(fps * KEYFRAME_SECONDS));
        Ok(H264 {
            encoder: Encoder::with_api_config(OpenH264API::from_source(), config)?,
            bitrate,
            yuv: None,
            last: None,
            nominal: Duration::from_secs_f64(1.0 / fps as f64),
        })
    }

    /// One frame as an Annex B access unit; None when the encoder had nothing to say.
    pub fn encode(&mut self, frame: &Frame, keyframe: bool) -> anyhow::Result<Option<AccessUnit>> {
        // 4:2:0 needs even sizes: an odd last row or column is left out.
        let (width, height) = (frame.width as usize & !1, frame.height as usize & !1);
        if width == 0 || height == 0 {
            return Ok(None);
        }
        let yuv = match &mut self.yuv {
            Some(yuv) if yuv.dimensions() == (width, height) => yuv,
            slot => slot.insert(YUVBuffer::new(width, height)),
        };
        if (width, height) == (frame.width as usize, frame.height as usize) {
            yuv.read_rgb8(RgbSliceU8::new(&frame.rgb, (width, height)));
        } else {
            let stride = frame.width as usize * 3;
            let even: Vec<u8> = frame
                .rgb
                .chunks_exact(stride)
                .take(height)
                .flat_map(|row| &row[..width * 3])
                .copied()
                .collect();
            yuv.read_rgb8(RgbSliceU8::new(&even, (width, height)));
        }
        if keyframe {
            self.encoder.force_intra_frame();
        }
        let bitstream = self.encoder.encode(&*yuv)?;
        let keyframe = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        let data = bitstream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        // The real time between frames, so the RTP clock follows the pipeline's actual rate.
        let now = Instant::now();
        let duration = self
            .last
            .map_or(self.nominal, |last| now - last)
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        self.last = Some(now);
        Ok(Some(AccessUnit {
            data: Bytes::from(data),
            keyframe,
            duration,
            received: frame.received,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::Decoder;

    #[test]
    fn frames_encode_and_decode_back_with_keyframes_on_request() {
        let mut h264 = H264::new(1_000_000, 30).unwrap();
        let mut frame = Frame::new(65, 49); // odd sizes lose their last row and column
        for pixel in frame.rgb.chunks_exact_mut(3) {
            pixel.copy_from_slice(&[200, 40, 40]);
        }
        let first = h264.encode(&frame, false).unwrap().unwrap();
        assert!(first.keyframe, "a stream starts with a keyframe");
        let second = h264.encode(&frame, false).unwrap().unwrap();
        assert!(!second.keyframe);
        assert!(h264.encode(&frame, true).unwrap().unwrap().keyframe);

        let mut decoder = Decoder::new().unwrap();
        let picture = decoder.decode(&first.data).unwrap().expect("a picture");
        assert_eq!((picture.width, picture.height), (64, 48));
        let red = picture.pixel(32, 24)[0];
        assert!(red > 150, "decoded red is {red}");
    }
}
