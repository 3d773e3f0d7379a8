//! One peer connection as WHEP and WHIP both need it: H.264 constrained baseline only, host
//! candidates on the configured addresses (STUN only when configured), keyframe requests
//! passed up to the application, and its events turned into channels a task can wait on.

use super::offer::Plan;
use crate::settings::typed::Webrtc;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_G722, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU,
};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RTCRtpTransceiverDirection;

/// How long the answer waits for host candidates (they take milliseconds; STUN takes longer).
const GATHER_LIMIT: Duration = Duration::from_secs(3);
/// A peer not connected by then is given up (ICE's own failure comes later).
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// ICE consent (RFC 7675): visiond checks every second; a peer heard from by no STUN check
/// or answer for 7 s is `disconnected` (it may come back), and after 5 s more `failed` and
/// its session ended. webrtc-rs's defaults (5 s, then 25 s) kept a vanished publisher's slot
/// for half a minute; under 7 s, peers that only send their own checks every 4-6 s (as the
/// RFC has them: ffmpeg does) flap between connected and disconnected.
const ICE_KEEPALIVE: Duration = Duration::from_secs(1);
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(7);
const ICE_FAILED_AFTER: Duration = Duration::from_secs(5);
/// Past the default interceptors, so they have seen inbound RTCP before it is narrowed.
const KEYFRAME_REQUESTS_SLOT: usize = 14_000;

pub fn h264() -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .to_owned(),
        rtcp_feedback: vec![
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ],
    }
}

/// What a peer connection reports, as channels its owning task waits on.
pub struct Events {
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
    pub tracks: mpsc::Receiver<Arc<dyn TrackRemote>>,
}

impl Events {
    /// The connection's state, to read while another task waits on these events.
    pub fn state(&self) -> watch::Receiver<RTCPeerConnectionState> {
        self.state.clone()
    }

    /// Waits until the peer is connected; false when it failed, closed or took too long.
    pub async fn connected(&mut self) -> bool {
        let wait = self.state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        matches!(
            tokio::time::timeout(CONNECT_LIMIT, wait).await,
            Ok(Ok(state)) if *state == RTCPeerConnectionState::Connected
        )
    }

    /// Waits (a few seconds at most) until every local candidate is known.
    pub async fn gathered(&mut self) {
        let _ = tokio::time::timeout(GATHER_LIMIT, self.gathered.wait_for(|done| *done)).await;
    }

    /// Resolves once the peer failed or closed.
    pub async fn ended(&mut self) {
        let _ = self
            .state
            .wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                )
            })
            .await;
    }
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    tracks: mpsc::Sender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection");
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.try_send(track);
    }
}

/// A new peer connection for `settings`, and its events.
pub async fn build(
    settings: &Webrtc,
    // The remote offer this peer answers; `None` for a peer that makes the offer.
    offer: Option<&RTCSessionDescription>,
) -> anyhow::Result<(Arc<dyn PeerConnection>, Events)> {
    let mut media = MediaEngine::default();
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: h264(),
            payload_type: 102,
        },
        RtpCodecKind::Video,
    )?;
    // Audio sections are answered (inactive, in the bundle) rather than rejected: a player
    // whose first section is audio makes it the BUNDLE tag and needs it answered there.
    for (mime_type, clock_rate, channels, payload_type) in [
        (MIME_TYPE_OPUS, 48_000, 2, 111),
        (MIME_TYPE_G722, 8_000, 0, 9),
        (MIME_TYPE_PCMU, 8_000, 0, 0),
        (MIME_TYPE_PCMA, 8_000, 0, 8),
    ] {
        let rtp_codec = RTCRtpCodec {
            mime_type: mime_type.to_owned(),
            clock_rate,
            channels,
            ..Default::default()
        };
        media.register_codec(
            RTCRtpCodecParameters {
                rtp_codec,
                payload_type,
            },
            RtpCodecKind::Audio,
        )?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut media)?.with(
        Slot::from(KEYFRAME_REQUESTS_SLOT),
        KeyframeRequests::default(),
    );

    let ice_servers = if settings.stun.is_empty() {
        Vec::new()
    } else {
        vec![RTCIceServer {
            urls: vec![settings.stun.clone()],
            ..Default::default()
        }]
    };
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .build();
    // Remote mDNS names are not resolved: browsers' checks reach our real addresses anyway,
    // and no multicast socket is opened per peer.
    let role = offer.map_or(RTCDtlsRole::Auto, |o| answering_role(&o.sdp));
    let engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED_AFTER),
            Some(ICE_FAILED_AFTER),
            Some(ICE_KEEPALIVE),
        )
        .with_answering_dtls_role(role);
    let addresses: Vec<String> = if settings.ice_hosts.is_empty() {
        vec!["0.0.0.0:0".to_owned()] // one socket per interface, loopback left out
    } else {
        settings
            .ice_hosts
            .iter()
            .map(|host| bind_address(host))
            .collect()
    };

    let (state, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let (gathered, gathered_rx) = watch::channel(false);
    let (tracks, tracks_rx) = mpsc::channel(4);
    let handler = Arc::new(Handler {
        state,
        gathered,
        tracks,
    });
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(engine.build())
            .with_handler(handler)
            .with_udp_addrs(addresses)
            .build()
            .await?,
    );
    let events = Events {
        state: state_rx,
        gathered: gathered_rx,
        tracks: tracks_rx,
    };
    Ok((pc, events))
}

/// The DTLS role the answer must take, from the offer's `a=setup` (RFC 8842): an offerer
/// that will be active (ffmpeg's `dtls_active`) needs a passive answerer, and the reverse;
/// webrtc-rs would answer with its configured role whatever the offer says.
fn answering_role(offer: &str) -> RTCDtlsRole {
    let setup = offer
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("a=setup:"));
    match setup {
        Some("active") => RTCDtlsRole::Server,
        Some("passive") => RTCDtlsRole::Client,
        _ => RTCDtlsRole::Auto,
    }
}

/// `ip` or `ip:port` from `[webrtc] ice_hosts`, with port 0 (any) when none is given.
fn bind_address(host: &str) -> String {
    if host.parse::<std::net::SocketAddr>().is_ok() {
        host.to_owned()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:0") // a bare IPv6 address
    } else {
        format!("{host}:0")
    }
}

/// Why an offer was not answered.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the offer is not valid SDP: {0}")]
    Malformed(String),
    #[error("the offer cannot be answered: {0}")]
    Refused(String),
}

/// Checks an offer before any connection is made for it.
pub fn parse_offer(sdp: String) -> Result<RTCSessionDescription, OfferError> {
    RTCSessionDescription::offer(sdp).map_err(|e| OfferError::Malformed(e.to_string()))
}

/// Applies the remote offer and returns the complete answer, candidates included (WHIP and
/// WHEP clients may not trickle). The sections `plan` does not serve are answered inactive.
/// With `nat_1to1_ip` set, host candidates announce that address instead of the machine's own.
pub async fn answer(
    pc: &Arc<dyn PeerConnection>,
    events: &mut Events,
    offer: RTCSessionDescription,
    plan: &Plan,
    nat_1to1_ip: &str,
) -> Result<String, OfferError> {
    let refused = |e: webrtc::error::Error| OfferError::Refused(e.to_string());
    pc.set_remote_description(offer).await.map_err(refused)?;
    for transceiver in pc.get_transceivers().await {
        let mid = transceiver.mid().await.ok().flatten();
        if mid.is_some_and(|mid| plan.other_mids.contains(&mid)) {
            transceiver
                .set_direction(RTCRtpTransceiverDirection::Inactive)
                .await
                .map_err(refused)?;
        }
    }
    let answer = pc.create_answer(None).await.map_err(refused)?;
    pc.set_local_description(answer).await.map_err(refused)?;
    events.gathered().await;
    let answer = pc
        .local_description()
        .await
        .map(|answer| answer.sdp)
        .ok_or_else(|| OfferError::Refused("no local description".into()))?;
    Ok(match nat_1to1_ip {
        "" => answer,
        address => announce_host_candidates_as(&answer, address),
    })
}

/// NAT 1:1 (a container's or a cloud machine's public address): the host candidates' address
/// replaced, their ports kept. webrtc-rs 0.21 takes the setting but does not apply it.
fn announce_host_candidates_as(sdp: &str, address: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            let Some(candidate) = line.strip_prefix("a=candidate:") else {
                return line.to_owned();
            };
            // foundation component transport priority ADDRESS port typ TYPE ...
            let mut fields: Vec<&str> = candidate.split(' ').collect();
            if fields.len() > 7 && fields[6] == "typ" && fields[7].trim_end() == "host" {
                fields[4] = address;
            }
            format!("a=candidate:{}", fields.join(" "))
        })
        .collect()
}

/// Passes inbound PLI and FIR packets to the application (track events); the default chain
/// keeps all RTCP to itself. Everything else passes through untouched.
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<_> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_1to1_rewrites_only_host_candidates() {
        let sdp = "v=0\r\n\
a=candidate:1 1 udp 2130706431 192.0.2.2 57139 typ host\r\n\
a=candidate:2 1 udp 1694498815 198.51.100.20 40000 typ srflx raddr 192.0.2.2 rport 57139\r\n\
a=end-of-candidates\r\n";
        let announced = announce_host_candidates_as(sdp, "203.0.113.7");
        assert_eq!(
            announced,
            "v=0\r\n\
a=candidate:1 1 udp 2130706431 203.0.113.7 57139 typ host\r\n\
a=candidate:2 1 udp 1694498815 198.51.100.20 40000 typ srflx raddr 192.0.2.2 rport 57139\r\n\
a=end-of-candidates\r\n"
        );
    }

    #[test]
    fn ice_hosts_become_bind_addresses() {
        assert_eq!(bind_address("192.168.1.5"), "192.168.1.5:0");
        assert_eq!(bind_address("192.168.1.5:40000"), "192.168.1.5:40000");
        assert_eq!(bind_address("fd00::5"), "[fd00::5]:0");
    }
}
