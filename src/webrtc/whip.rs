//! A WHIP publisher: its H.264 RTP is put back together into access units, decoded with
//! openh264 on a thread of its own, and the pictures go to the `webrtc` input's slot.

use super::peer::Events;
use crate::media::h264::Decoder;
use crate::pipeline::status::Shared;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_remote::TrackRemoteEvent;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// Units waiting for the decoder before newer ones are dropped (and a keyframe requested).
const DECODE_QUEUE: usize = 8;
/// Keyframe requests to the publisher at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// Prepares a new peer connection to receive one video track.
pub async fn receive_video(pc: &Arc<dyn PeerConnection>) -> anyhow::Result<()> {
    let init = RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Recvonly,
        ..Default::default()
    };
    pc.add_transceiver_from_kind(RtpCodecKind::Video, Some(init))
        .await?;
    Ok(())
}

/// Receives until the publisher's track ends or the peer goes away.
pub async fn run(shared: &Arc<Shared>, events: &mut Events) {
    // Only the video track: an audio section the offer had is answered inactive, and any
    // track it still brings is not read.
    let track = loop {
        let Some(track) = events.tracks.recv().await else {
            return;
        };
        if track.kind().await == RtpCodecKind::Video {
            break track;
        }
    };
    let _publishing = shared.ingest.publisher();
    let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    let (units, queue) = sync_channel::<Unit>(DECODE_QUEUE);
    let needs_keyframe = Arc::new(AtomicBool::new(true));
    let decoder = {
        let (shared, needs_keyframe) = (shared.clone(), needs_keyframe.clone());
        std::thread::Builder::new()
            .name("whip-decoder".into())
            .spawn(move || decode(&queue, &shared, &needs_keyframe))
    };
    let Ok(decoder) = decoder else {
        return;
    };
    let mut assembler = Assembler::default();
    let mut last_pli: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = track.poll() => event,
            () = events.ended() => None,
        };
        let Some(event) = event else { break };
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        if let Some(unit) = assembler.push(&packet) {
            if let Err(TrySendError::Full(_)) = units.try_send(unit) {
                assembler.resync(); // the decoder fell behind: start again from a keyframe
            }
        }
        if assembler.waiting_for_keyframe || needs_keyframe.swap(false, Ordering::Relaxed) {
            assembler.waiting_for_keyframe = true;
            if last_pli.is_none_or(|at| at.elapsed() >= PLI_INTERVAL) {
                last_pli = Some(Instant::now());
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                let _ = track.write_rtcp(vec![Box::new(pli)]).await;
            }
        }
    }
    drop(units); // ends the decoder thread
    let _ = tokio::task::spawn_blocking(move || decoder.join()).await;
}

/// One access unit in Annex B, and when its last packet arrived.
struct Unit {
    data: Vec<u8>,
    received: Instant,
}

/// Puts RTP packets back together into access units (the marker bit ends one). A lost packet
/// drops the unit and everything up to the next keyframe, which would not decode cleanly.
#[derive(Default)]
struct Assembler {
    depacketizer: H264Packet,
    unit: Vec<u8>,
    timestamp: Option<u32>,
    next_sequence: Option<u16>,
    broken: bool,
    waiting_for_keyframe: bool,
}

impl Assembler {
    fn push(&mut self, packet: &rtp::Packet) -> Option<Unit> {
        let header = &packet.header;
        if self
            .next_sequence
            .is_some_and(|next| next != header.sequence_number)
        {
            self.resync();
        }
        self.next_sequence = Some(header.sequence_number.wrapping_add(1));
        if self.timestamp != Some(header.timestamp) {
            self.unit.clear(); // a unit whose marker never came
            self.broken = false;
            self.timestamp = Some(header.timestamp);
        }
        if !packet.payload.is_empty() {
            match self.depacketizer.depacketize(&packet.payload) {
                Ok(nals) => self.unit.extend_from_slice(&nals),
                Err(_) => self.resync(),
            }
        }
        if !header.marker || self.broken || self.unit.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.unit);
        if self.waiting_for_keyframe && !has_keyframe(&data) {
            return None;
        }
        self.waiting_for_keyframe = false;
        Some(Unit {
            data,
            received: Instant::now(),
        })
    }

    fn resync(&mut self) {
        self.depacketizer = H264Packet::default();
        self.unit.clear();
        self.broken = true;
        self.waiting_for_keyframe = true;
    }
}

/// Whether Annex B data holds an IDR slice or a sequence parameter set.
fn has_keyframe(data: &[u8]) -> bool {
    data.windows(4)
        .any(|w| w[..3] == [0, 0, 1] && matches!(w[3] & 0x1f, 5 | 7))
}

fn decode(queue: &Receiver<Unit>, shared: &Shared, needs_keyframe: &AtomicBool) {
    let mut decoder = match Decoder::new() {
        Ok(decoder) => decoder,
        Err(e) => {
            tracing::error!("H.264 decoder: {e}");
            return;
        }
    };
    while let Ok(unit) = queue.recv() {
        match decoder.decode(&unit.data) {
            Ok(Some(mut frame)) => {
                frame.received = Some(unit.received);
                shared.ingest.slot.put(frame);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("WHIP video does not decode: {e}");
                needs_keyframe.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(sequence_number: u16, timestamp: u32, marker: bool, payload: &[u8]) -> rtp::Packet {
        let mut packet = rtp::Packet::default();
        packet.header.sequence_number = sequence_number;
        packet.header.timestamp = timestamp;
        packet.header.marker = marker;
        packet.payload = Bytes::copy_from_slice(payload);
        packet
    }

    const IDR: [u8; 3] = [0x65, 0x88, 0x84];
    const P: [u8; 3] = [0x41, 0x9a, 0x02];

    #[test]
    fn units_start_at_a_keyframe_and_a_gap_waits_for_the_next() {
        let mut assembler = Assembler {
            waiting_for_keyframe: true,
            ..Default::default()
        };
        assert!(
            assembler.push(&packet(1, 100, true, &P)).is_none(),
            "no keyframe yet"
        );
        let unit = assembler.push(&packet(2, 200, true, &IDR)).unwrap();
        assert_eq!(unit.data, [0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert!(assembler.push(&packet(3, 300, true, &P)).is_some());
        // Packet 4 is lost: P-frames are dropped until the next keyframe.
        assert!(assembler.push(&packet(5, 400, true, &P)).is_none());
        assert!(assembler.push(&packet(6, 500, true, &P)).is_none());
        assert!(assembler.push(&packet(7, 600, true, &IDR)).is_some());
    }
}
