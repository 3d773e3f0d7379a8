//! A WHEP viewer: its own track and packetizer, fed from the one encoded stream. It starts on
//! a keyframe, skips to the next keyframe when it lags, and asks for one on PLI/FIR.

use super::peer::{self, Events};
use super::{AccessUnit, Output, Watching};
use rtc::media::Sample;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast::error::RecvError;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::RtpSender;

/// An H.264 track sent to one peer: a viewer's, or (in the benchmark) a publisher's.
pub struct OutgoingVideo {
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
}

impl OutgoingVideo {
    /// Adds the video track to a new peer connection, before the offer is applied.
    pub async fn add_to(pc: &Arc<dyn PeerConnection>) -> anyhow::Result<OutgoingVideo> {
        let ssrc = rand_ssrc();
        let track = Arc::new(TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                "visiond".to_owned(),
                "visiond-video".to_owned(),
                "visiond output".to_owned(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: peer::h264(),
                    ..Default::default()
                }],
            ),
        )?);
        let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
        Ok(OutgoingVideo {
            track,
            sender,
            ssrc,
        })
    }

    /// The payload type the peer agreed to, once connected.
    pub async fn payload_type(&self) -> Option<u8> {
        let parameters = self.sender.get_parameters().await.ok()?;
        Some(parameters.rtp_parameters.codecs.first()?.payload_type)
    }

    /// Packetizes one access unit and sends it.
    pub async fn send(&self, payload_type: u8, unit: &AccessUnit) -> webrtc::error::Result<()> {
        let sample = Sample {
            data: unit.data.clone(),
            duration: unit.duration,
            ..Sample::new(Instant::now())
        };
        self.track
            .sample_writer(self.ssrc, payload_type)
            .write_sample(&sample)
            .await
    }

    /// Streams the output to a viewer until it goes away or cannot be written to.
    pub async fn run(self, output: &Output, events: &mut Events) {
        if !events.connected().await {
            return;
        }
        let Some(payload_type) = self.payload_type().await else {
            return;
        };
        let mut units = output.units.subscribe();
        let _watching = Watching::new(output);
        output.request_keyframe();
        let mut synced = false;
        loop {
            tokio::select! {
                unit = units.recv() => match unit {
                    Ok(unit) => {
                        if !synced && !unit.keyframe {
                            continue;
                        }
                        synced = true;
                        if self.send(payload_type, &unit).await.is_err() {
                            return;
                        }
                        if let Some(received) = unit.received {
                            output.record_latency(received);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        synced = false;
                        output.request_keyframe();
                    }
                    Err(RecvError::Closed) => return,
                },
                event = self.track.poll() => match event {
                    Some(TrackLocalEvent::OnRtcpPacket(_)) => output.request_keyframe(),
                    Some(_) => {}
                    None => return,
                },
                () = events.ended() => return,
            }
        }
    }
}

/// A random SSRC, from the standard library's hasher keys (no RNG crate needed for this).
fn rand_ssrc() -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(Instant::now()) as u32
}
