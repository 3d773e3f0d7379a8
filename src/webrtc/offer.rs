//! What visiond can serve, read from an offer's SDP before any connection is made for it.
//! webrtc-rs falls back to matching codecs by name alone, so on its own it answers offers
//! visiond then cannot honour (VP8 only, H.264 High only, packetization-mode 0 only) and
//! holds a viewer slot for each; those are refused here with what visiond needs instead.

use super::peer::OfferError;
use super::Role;

/// The offer's sections as the answer needs them: the video section visiond serves, and the
/// others (audio, mostly), which are answered inactive inside the bundle.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub other_mids: Vec<String>,
}

/// Checks that `sdp` offers what `role` needs: a video section going the right way with an
/// H.264 format visiond can send (WHEP) or receive (WHIP).
pub fn check(sdp: &str, role: Role) -> Result<Plan, OfferError> {
    let sections = sections(sdp);
    let refused = |why: String| Err(OfferError::Refused(why));
    let Some(video) = sections.iter().find(|s| s.kind == "video" && s.port != 0) else {
        return refused(format!(
            "the offer has no video section: visiond {} one H.264 video stream",
            role.visiond_does()
        ));
    };
    let needed = match role {
        Role::Viewer => "recvonly",
        Role::Publisher => "sendonly",
    };
    if video.direction != needed && video.direction != "sendrecv" {
        return refused(format!(
            "the offer's video is {}: {} ({needed})",
            video.direction,
            match role {
                Role::Viewer => "a WHEP viewer receives video; publish by WHIP",
                Role::Publisher => "a WHIP publisher sends video; view by WHEP",
            }
        ));
    }
    let h264: Vec<&Format> = video
        .formats
        .iter()
        .filter(|f| f.codec.eq_ignore_ascii_case("H264"))
        .collect();
    if h264.is_empty() {
        return refused(format!(
            "the offer's video has no H.264 (it offers {}): visiond {} H.264 with packetization-mode=1",
            video.media_codecs().join(", "),
            role.visiond_does()
        ));
    }
    let fragmented: Vec<&&Format> = h264
        .iter()
        .filter(|f| f.packetization_mode() == 1)
        .collect();
    if fragmented.is_empty() {
        return refused(format!(
            "the offer's H.264 allows only packetization-mode=0: visiond {} packetization-mode=1 (FU-A fragments)",
            role.visiond_does()
        ));
    }
    if role == Role::Viewer && !fragmented.iter().any(|f| f.plays_constrained_baseline()) {
        let profiles: Vec<String> = fragmented.iter().map(|f| f.profile_level_id()).collect();
        return refused(format!(
            "the offer's H.264 profiles ({}) cannot play what visiond sends: offer Constrained \
             Baseline (profile-level-id 42e0xx) with packetization-mode=1",
            profiles.join(", ")
        ));
    }
    let other_mids = sections
        .iter()
        .filter(|s| !std::ptr::eq(*s, video))
        .filter_map(|s| s.mid.clone())
        .collect();
    Ok(Plan { other_mids })
}

/// One `m=` section, as much of it as the checks read.
#[derive(Debug)]
struct Section {
    kind: String,
    port: u32,
    mid: Option<String>,
    direction: String,
    formats: Vec<Format>,
}

impl Section {
    /// The codecs of the section's media formats (not retransmission or error correction).
    fn media_codecs(&self) -> Vec<String> {
        let mut codecs: Vec<String> = Vec::new();
        for format in &self.formats {
            let repair = ["rtx", "red", "ulpfec", "flexfec-03"];
            if !repair.iter().any(|r| format.codec.eq_ignore_ascii_case(r))
                && !codecs.contains(&format.codec)
            {
                codecs.push(format.codec.clone());
            }
        }
        codecs
    }
}

/// One payload type of a section: its codec (`a=rtpmap`) and parameters (`a=fmtp`).
#[derive(Debug)]
struct Format {
    payload: String,
    codec: String,
    parameters: String,
}

impl Format {
    fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.split(';').find_map(|p| {
            let (key, value) = p.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }

    /// RFC 6184: 0 when absent.
    fn packetization_mode(&self) -> u32 {
        self.parameter("packetization-mode")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// RFC 6184's default is Baseline level 1 (`42000a`).
    fn profile_level_id(&self) -> String {
        self.parameter("profile-level-id")
            .unwrap_or("42000a")
            .to_ascii_lowercase()
    }

    /// Whether a decoder of this profile plays the Constrained Baseline stream visiond
    /// sends: Baseline (profile_idc 0x42, with or without constraint_set1), and Main
    /// (0x4d) or Extended (0x58) when they are flagged as Constrained Baseline (RFC 6184,
    /// table 5). High and the others are refused: the answer would claim a profile visiond
    /// does not send.
    fn plays_constrained_baseline(&self) -> bool {
        let id = self.profile_level_id();
        let byte = |i: usize| {
            id.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        match (byte(0), byte(2)) {
            (Some(0x42), Some(_)) => true,
            (Some(0x4d), Some(iop)) => iop & 0x80 != 0,
            (Some(0x58), Some(iop)) => iop & 0xc0 == 0xc0,
            _ => false,
        }
    }
}

/// The offer's sections, in order. Lines visiond does not read are skipped; the SDP itself
/// was parsed (and refused if malformed) by webrtc-rs first.
fn sections(sdp: &str) -> Vec<Section> {
    let mut session_direction = "sendrecv".to_owned();
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            let mut fields = media.split_whitespace();
            let kind = fields.next().unwrap_or("").to_ascii_lowercase();
            let port = fields
                .next()
                .and_then(|p| p.split('/').next()?.parse().ok())
                .unwrap_or(0);
            let formats = fields
                .skip(1) // the protocol
                .map(|payload| Format {
                    payload: payload.to_owned(),
                    codec: String::new(),
                    parameters: String::new(),
                })
                .collect();
            sections.push(Section {
                kind,
                port,
                mid: None,
                direction: session_direction.clone(),
                formats,
            });
            continue;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        let Some(section) = sections.last_mut() else {
            if is_direction(name) {
                session_direction = name.to_owned();
            }
            continue;
        };
        match name {
            "mid" => section.mid = Some(value.to_owned()),
            "rtpmap" | "fmtp" => {
                let (payload, rest) = value.split_once(' ').unwrap_or((value, ""));
                if let Some(format) = section.formats.iter_mut().find(|f| f.payload == payload) {
                    if name == "rtpmap" {
                        format.codec = rest.split('/').next().unwrap_or("").to_owned();
                    } else {
                        format.parameters = rest.to_owned();
                    }
                }
            }
            direction if is_direction(direction) => section.direction = direction.to_owned(),
            _ => {}
        }
    }
    sections
}

fn is_direction(name: &str) -> bool {
    matches!(name, "sendrecv" | "sendonly" | "recvonly" | "inactive")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser-like viewer offer: audio first (the BUNDLE tag), then video with the
    /// formats given.
    fn viewer_offer(video_formats: &[(&str, &str, &str)]) -> String {
        let payloads: Vec<&str> = video_formats.iter().map(|f| f.0).collect();
        let mut sdp = String::from(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
             a=rtpmap:111 opus/48000/2\r\n",
        );
        sdp += &format!(
            "m=video 9 UDP/TLS/RTP/SAVPF {}\r\na=mid:1\r\na=recvonly\r\n",
            payloads.join(" ")
        );
        for (payload, codec, parameters) in video_formats {
            sdp += &format!("a=rtpmap:{payload} {codec}/90000\r\n");
            if !parameters.is_empty() {
                sdp += &format!("a=fmtp:{payload} {parameters}\r\n");
            }
        }
        sdp
    }

    fn refusal(sdp: &str, role: Role) -> String {
        match check(sdp, role) {
            Err(OfferError::Refused(why)) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_constrained_baseline_offer_is_served_and_its_audio_answered_inactive() {
        let sdp = viewer_offer(&[
            ("96", "VP8", ""),
            (
                "102",
                "H264",
                "packetization-mode=1;profile-level-id=42e01f",
            ),
            ("103", "rtx", "apt=102"),
        ]);
        let plan = check(&sdp, Role::Viewer).expect("served");
        assert_eq!(plan.other_mids, ["0"]);
    }

    #[test]
    fn offers_without_usable_h264_are_refused_with_what_visiond_needs() {
        let vp8 = viewer_offer(&[("96", "VP8", ""), ("97", "rtx", "apt=96")]);
        assert_eq!(
            refusal(&vp8, Role::Viewer),
            "the offer's video has no H.264 (it offers VP8): visiond sends H.264 with packetization-mode=1"
        );
        let mode0 = viewer_offer(&[("102", "H264", "profile-level-id=42e01f")]);
        assert!(refusal(&mode0, Role::Viewer).contains("only packetization-mode=0"));
        let high = viewer_offer(&[(
            "102",
            "H264",
            "packetization-mode=1;profile-level-id=640028",
        )]);
        assert!(refusal(&high, Role::Viewer).contains("(640028) cannot play"));
    }

    #[test]
    fn a_publisher_may_send_any_h264_profile_with_fragments() {
        let high = viewer_offer(&[(
            "102",
            "H264",
            "packetization-mode=1;profile-level-id=640028",
        )])
        .replace("a=recvonly", "a=sendonly");
        assert!(check(&high, Role::Publisher).is_ok());
    }

    #[test]
    fn audio_only_and_wrong_way_offers_are_refused() {
        let audio_only = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                          a=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(
            refusal(audio_only, Role::Viewer),
            "the offer has no video section: visiond sends one H.264 video stream"
        );
        let viewer = viewer_offer(&[("102", "H264", "packetization-mode=1")]);
        assert!(refusal(&viewer, Role::Publisher).contains("video is recvonly"));
        let rejected = viewer.replace("m=video 9", "m=video 0");
        assert!(refusal(&rejected, Role::Viewer).contains("no video section"));
    }

    #[test]
    fn constrained_baseline_is_recognised_in_every_profile_that_signals_it() {
        let plays = |id: &str| {
            Format {
                payload: "102".into(),
                codec: "H264".into(),
                parameters: format!("packetization-mode=1;profile-level-id={id}"),
            }
            .plays_constrained_baseline()
        };
        assert!(plays("42e01f") && plays("42001f") && plays("42C01F"));
        assert!(plays("4d801f") && !plays("4d001f"));
        assert!(plays("58c01f") && !plays("58801f"));
        assert!(!plays("640028") && !plays("zz"));
    }
}
