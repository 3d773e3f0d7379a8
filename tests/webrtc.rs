//! WHEP and WHIP on the real binary over real HTTP and real UDP: signaling errors, the tokens,
//! and real peers from an independent client (aiortc, in Python: not webrtc-rs) that
//! publishes and plays, ten viewers at once, and 100 connect/DELETE cycles that must leave
//! no threads, descriptors or memory behind.

mod common;

use common::{aiortc, ice_on_machine_address, process_usage, small_input, with_input, Server};
use serde_json::Value as Json;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Longer than tokio's idle blocking threads live (10 s).
const SETTLE: Duration = Duration::from_secs(12);
const OFFER_TYPE: (&str, &str) = ("Content-Type", "application/sdp");

/// A request and the status it must get: method, path, headers, body, status.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    u16,
);

fn json(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

#[test]
fn bad_signaling_gets_a_json_4xx_and_breaks_nothing() {
    let server = Server::start_with(|t| with_input(t, "test"), &[]);
    let cases: [Case; 6] = [
        (
            "POST",
            "/whep",
            &[("Content-Type", "text/plain")],
            Some("v=0"),
            415,
        ),
        ("POST", "/whep", &[], Some("v=0"), 415),
        ("POST", "/whep", &[OFFER_TYPE], Some("this is not SDP"), 400),
        ("DELETE", "/whep/0123456789abcdef", &[], None, 404),
        ("DELETE", "/whip/nothing", &[], None, 404),
        ("POST", "/whip", &[OFFER_TYPE], Some("v=0"), 409),
    ];
    for (method, path, headers, body, expected) in cases {
        let (status, text) = server.request(method, path, headers, body);
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(json(&text)["error"].is_string(), "{method} {path}: {text}");
    }
    let (_, conflict) = server.request("POST", "/whip", &[OFFER_TYPE], Some("v=0"));
    assert_eq!(json(&conflict)["key"], "input.uri");
    let status = server.get_json("/api/v1/status");
    assert_eq!(status["peers"]["viewers"], 0);
    assert_eq!(status["peers"]["publisher"], false);
}

#[test]
fn whip_needs_the_token_and_whep_only_with_auth_viewers() {
    let with_token = |t: String| t.replace("auth_token = \"\"", "auth_token = \"s3cret\"");
    let server = Server::start_with(with_token, &[]);
    let post = |path: &str, headers: &[(&str, &str)]| {
        server.request("POST", path, headers, Some("not SDP")).0
    };
    let bearer = ("Authorization", "Bearer s3cret");
    assert_eq!(post("/whip", &[OFFER_TYPE]), 401);
    assert_eq!(
        post("/whip", &[OFFER_TYPE, bearer]),
        400,
        "past the token: bad SDP"
    );
    assert_eq!(post("/whep", &[OFFER_TYPE]), 400, "viewing is open");
    drop(server);

    let viewers_too =
        |t: String| with_token(t).replace("auth_viewers = false", "auth_viewers = true");
    let server = Server::start_with(viewers_too, &[]);
    let post = |headers: &[(&str, &str)]| server.request("POST", "/whep", headers, Some("x")).0;
    assert_eq!(post(&[OFFER_TYPE]), 401);
    assert_eq!(post(&[OFFER_TYPE, ("Authorization", "Bearer s3cret")]), 400);
}

/// Runs tests/webrtc_client.py with the venv tools/setup makes; returns its JSON report.
fn colours(viewer: &Json) -> Vec<[f64; 3]> {
    viewer["colours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| [0, 1, 2].map(|i| c[i].as_f64().unwrap()))
        .collect()
}

#[test]
fn an_independent_client_publishes_by_whip_and_plays_by_whep() {
    let server = Server::start_with(|t| small_input(ice_on_machine_address(t)), &[]);
    server.wait_for("/api/v1/status", Duration::from_secs(10), |s| {
        s["input"]["state"] == "waiting"
    });
    let report = aiortc(&server, &["publish-and-play", "--seconds", "6"]);
    assert_eq!(report["published"], 200, "{report}");
    let viewer = &report["viewers"][0];
    assert!(viewer["frames"].as_u64().unwrap() > 20, "{report}");
    assert!(
        viewer["fingerprints"].as_u64().unwrap() > 2,
        "frames change: {report}"
    );
    // The published green picture came back through the pipeline and the encoder.
    let green = colours(viewer)
        .iter()
        .filter(|[r, g, b]| *g > 120.0 && *g > r + 60.0 && *g > b + 60.0)
        .count();
    assert!(green >= 3, "the viewer saw the published picture: {report}");
    assert_eq!(viewer["size"], serde_json::json!([320, 240]), "{report}");
    // The publisher left: the input waits, and the output goes on.
    server.wait_for("/api/v1/status", Duration::from_secs(5), |s| {
        s["input"]["state"] == "waiting" && s["peers"]["publisher"] == false
    });
}

#[test]
fn a_new_publisher_replaces_the_old_one() {
    let server = Server::start_with(|t| small_input(ice_on_machine_address(t)), &[]);
    let report = aiortc(&server, &["replace", "--seconds", "8"]);
    let replaced = &report["replace"];
    // visiond closed the first publisher's peer; its resource is gone, the second's is not.
    assert_ne!(replaced["first_state"], "connected", "{report}");
    assert_eq!(replaced["first_delete"], 404, "{report}");
    assert_eq!(replaced["second_delete"], 200, "{report}");
    let red = colours(&report["viewers"][0])
        .iter()
        .filter(|[r, g, b]| *r > 120.0 && *r > g + 60.0 && *r > b + 60.0)
        .count();
    assert!(red >= 3, "the viewer saw the second publisher: {report}");
}

#[test]
fn ten_viewers_at_once_all_receive_the_output() {
    let server = Server::start_with(
        |t| small_input(ice_on_machine_address(with_input(t, "test"))),
        &[],
    );
    // Meanwhile the bitrate changes: it applies live, and the video goes on.
    let bitrate_change = std::thread::scope(|scope| {
        let change = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            server.put("/api/v1/config/output/bitrate", "500000").0
        });
        let report = aiortc(&server, &["play", "--viewers", "10", "--seconds", "6"]);
        (change.join().unwrap(), report)
    });
    let (changed, report) = bitrate_change;
    assert_eq!(changed, 200);
    let viewers = report["viewers"].as_array().unwrap();
    assert_eq!(viewers.len(), 10);
    for viewer in viewers {
        assert!(viewer["frames"].as_u64().unwrap() >= 10, "{report}");
        assert!(viewer["fingerprints"].as_u64().unwrap() >= 2, "{report}");
        assert_eq!(viewer["delete"], 200);
    }
    server.wait_for("/api/v1/status", Duration::from_secs(5), |s| {
        s["peers"]["viewers"] == 0
    });
}

#[test]
fn a_picture_loss_indication_gets_a_keyframe_at_once() {
    let server = Server::start_with(
        |t| small_input(ice_on_machine_address(with_input(t, "test"))),
        &[],
    );
    let report = aiortc(&server, &["pli", "--count", "3"]);
    let delays = report["delays"].as_array().unwrap();
    assert_eq!(delays.len(), 3, "{report}");
    for delay in delays {
        // The periodic keyframe is 1.5 s away when the PLI goes out; at 15 fps the next
        // frame is 67 ms away.
        assert!(delay.as_f64().unwrap() < 0.7, "{report}");
    }
}

#[test]
fn a_hundred_connect_and_delete_cycles_leave_nothing_behind() {
    let server = Server::start_with(
        |t| small_input(ice_on_machine_address(with_input(t, "test"))),
        &[],
    );
    let pid = server.child.id();
    // Warm up first: lazily made pools and buffers are not leaks. Idle blocking-pool
    // threads (address lookups) stay ten seconds before they go, so both counts wait longer.
    aiortc(&server, &["cycles", "--count", "10", "--parallel", "5"]);
    std::thread::sleep(SETTLE);
    let (threads, fds, rss) = process_usage(pid);
    aiortc(&server, &["cycles", "--count", "100", "--parallel", "10"]);
    server.wait_for("/api/v1/status", Duration::from_secs(5), |s| {
        s["peers"]["viewers"] == 0
    });
    std::thread::sleep(SETTLE);
    let (threads_after, fds_after, rss_after) = process_usage(pid);
    eprintln!("threads {threads} -> {threads_after}, fds {fds} -> {fds_after}, RSS {rss} -> {rss_after} KiB");
    assert!(
        threads_after <= threads + 2,
        "threads {threads} -> {threads_after}"
    );
    assert!(
        fds_after <= fds + 4,
        "file descriptors {fds} -> {fds_after}"
    );
    assert!(rss_after <= rss + 40 * 1024, "RSS {rss} -> {rss_after} KiB");
}

#[test]
fn with_a_certificate_everything_is_served_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let tls = |t: String| {
        t.replace(
            "tls_cert = \"\"",
            &format!("tls_cert = {:?}", cert.display().to_string()),
        )
        .replace(
            "tls_key = \"\"",
            &format!("tls_key = {:?}", key.display().to_string()),
        )
    };
    let server = Server::start_with(tls, &[]);
    let https = format!("https://127.0.0.1:{}", server.port);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = curl(&[&format!("{https}/api/v1/status")]);
    assert!(
        status.ends_with("\n200") && status.contains("\"peers\""),
        "{status}"
    );
    assert!(curl(&[&format!("{https}/")]).contains("/static/video.js"));
    let whep = curl(&[
        "-H",
        "Content-Type: application/sdp",
        "--data",
        "v=0",
        &format!("{https}/whep"),
    ]);
    assert!(whep.ends_with("\n400"), "{whep}");
    assert!(
        server.log_text().contains("serving https://"),
        "{}",
        server.log_text()
    );
}

/// A browser-like WHEP offer: one H.264 video stream to receive, no candidates (WHEP clients
/// may send them later or never).
const VIEWER_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Wq3n\r\n\
a=ice-pwd:8Zk1yS0vVf5hPq2mTn7cLr4x\r\n\
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:D0:A2:11:1C:5E:7B:29:3F:6C:2B:91:4D:7E:A1:0F:33:C8:94:E2:56:AB:1D:70:9C:04\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

/// VIEWER_OFFER with its one format replaced: `m=KIND` with payload `payload` and its rtpmap.
fn offer_of(kind: &str, payload: &str, rtpmap: &str) -> String {
    let codecs = VIEWER_OFFER.find("a=rtpmap:102").unwrap();
    VIEWER_OFFER[..codecs].replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 102",
        &format!("m={kind} 9 UDP/TLS/RTP/SAVPF {payload}"),
    ) + &format!("a=rtpmap:{payload} {rtpmap}\r\n")
}

#[test]
fn offers_visiond_cannot_serve_are_refused_and_hold_no_slot() {
    let server = Server::start_with(ice_on_machine_address, &[]);
    let audio_only = offer_of("audio", "111", "opus/48000/2");
    let vp8 = offer_of("video", "96", "VP8/90000");
    let vp8_publisher = vp8.replace("a=recvonly", "a=sendonly");
    let high = VIEWER_OFFER.replace("profile-level-id=42e01f", "profile-level-id=640028");
    let mode_0 = VIEWER_OFFER.replace("packetization-mode=1;", "");
    for (path, offer, says) in [
        ("/whep", audio_only.as_str(), "no video section"),
        ("/whep", vp8.as_str(), "no H.264 (it offers VP8)"),
        ("/whep", high.as_str(), "(640028) cannot play"),
        ("/whep", mode_0.as_str(), "only packetization-mode=0"),
        ("/whip", vp8_publisher.as_str(), "no H.264 (it offers VP8)"),
        ("/whip", VIEWER_OFFER, "video is recvonly"),
    ] {
        let (status, body) = server.request("POST", path, &[OFFER_TYPE], Some(offer));
        assert_eq!(status, 400, "{path}, {says}: {body}");
        let error = json(&body)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{path}: {error}");
    }
    let peers = &server.get_json("/api/v1/status")["peers"];
    assert_eq!(peers["viewers"], 0, "{peers}");
    assert_eq!(peers["publisher_state"], Json::Null, "{peers}");
}

/// The media sections of an SDP text, each from its `m=` line on.
fn sections(sdp: &str) -> Vec<&str> {
    sdp.split("m=").skip(1).collect()
}

#[test]
fn an_audio_section_first_is_answered_inactive_inside_the_bundle() {
    let server = Server::start_with(ice_on_machine_address, &[]);
    // As GStreamer's whepsrc offers by default: audio first, and the BUNDLE tag.
    let video_at = VIEWER_OFFER.find("m=video").unwrap();
    let audio = offer_of("audio", "111", "opus/48000/2")[video_at..].to_owned();
    let offer = VIEWER_OFFER[..video_at].replace("BUNDLE 0", "BUNDLE 0 1")
        + &audio
        + &VIEWER_OFFER[video_at..].replace("a=mid:0", "a=mid:1");
    let (status, answer) = server.request("POST", "/whep", &[OFFER_TYPE], Some(&offer));
    assert_eq!(status, 201, "{answer}");
    assert!(answer.contains("a=group:BUNDLE 0 1"), "{answer}");
    let sections = sections(&answer);
    assert_eq!(sections.len(), 2, "{answer}");
    let (audio, video) = (sections[0], sections[1]);
    assert!(audio.starts_with("audio 9 "), "{answer}");
    for line in [
        "a=mid:0",
        "a=inactive",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=setup:",
    ] {
        assert!(audio.contains(line), "audio lacks {line}: {answer}");
    }
    assert!(
        video.starts_with("video 9 ") && video.contains("a=mid:1"),
        "{answer}"
    );
    assert!(video.contains("a=sendonly"), "{answer}");

    // And a real player that offers audio first plays.
    let report = aiortc(&server, &["play", "--audio-first", "--seconds", "4"]);
    let viewer = &report["viewers"][0];
    assert!(viewer["frames"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(viewer["delete"], 200, "{report}");
}

/// The path of a session resource URL the client printed.
fn resource_path(report: &Json) -> String {
    let url = report["resource"].as_str().unwrap();
    url[url.find("/wh").unwrap()..].to_owned()
}

#[test]
fn peers_that_vanish_without_delete_are_reported_and_dropped_within_seconds() {
    let server = Server::start_with(|t| small_input(ice_on_machine_address(t)), &[]);
    // ICE consent: a peer silent for 7 s is disconnected, and 5 s later it is dropped;
    // webrtc-rs's own timeouts kept it for half a minute.
    let publisher = aiortc(&server, &["vanish", "--as", "publisher", "--seconds", "2"]);
    assert_eq!(publisher["connected"], "connected", "{publisher}");
    server.wait_for("/api/v1/status", Duration::from_secs(15), |s| {
        s["peers"]["publisher_state"] == "disconnected" && s["peers"]["publisher"] == false
    });
    server.wait_for("/api/v1/status", Duration::from_secs(15), |s| {
        s["peers"]["publisher_state"].is_null() && s["input"]["state"] == "waiting"
    });
    let (status, _) = server.request("DELETE", &resource_path(&publisher), &[], None);
    assert_eq!(status, 404, "the vanished publisher's session is gone");

    let viewer = aiortc(&server, &["vanish", "--as", "viewer", "--seconds", "2"]);
    assert_eq!(viewer["connected"], "connected", "{viewer}");
    server.wait_for("/api/v1/status", Duration::from_secs(20), |s| {
        s["peers"]["viewers"] == 0
    });
    let (status, _) = server.request("DELETE", &resource_path(&viewer), &[], None);
    assert_eq!(status, 404, "the vanished viewer's slot is free");
}

fn candidates(answer: &str) -> Vec<&str> {
    answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect()
}

#[test]
fn the_answer_takes_the_dtls_role_the_offer_leaves_it() {
    let server = Server::start_with(ice_on_machine_address, &[]);
    // RFC 8842: an active offerer (ffmpeg's `-whip_flags dtls_active`) gets a passive answer,
    // a passive one an active answer; `actpass` leaves the choice to visiond.
    for (offered, answered) in [
        ("active", "passive"),
        ("passive", "active"),
        ("actpass", "active"),
    ] {
        let offer = VIEWER_OFFER.replace("a=setup:actpass", &format!("a=setup:{offered}"));
        let (status, answer) = server.request("POST", "/whep", &[OFFER_TYPE], Some(&offer));
        assert_eq!(status, 201, "{answer}");
        let setup: Vec<&str> = answer
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("a=setup:"))
            .collect();
        assert!(!setup.is_empty(), "{answer}");
        assert!(
            setup.iter().all(|s| *s == answered),
            "offer {offered}: answer {setup:?}"
        );
    }
}

#[test]
fn a_nat_1to1_address_replaces_the_host_address_in_the_answer() {
    let machine = common::machine_address();
    let server = Server::start_with(
        |t| {
            ice_on_machine_address(t).replace("nat_1to1_ip = \"\"", "nat_1to1_ip = \"203.0.113.7\"")
        },
        &[],
    );
    let (status, answer) = server.request("POST", "/whep", &[OFFER_TYPE], Some(VIEWER_OFFER));
    assert_eq!(status, 201, "{answer}");
    let found = candidates(&answer);
    assert!(!found.is_empty(), "{answer}");
    for candidate in found {
        assert!(candidate.contains(" 203.0.113.7 "), "{candidate}");
        assert!(!candidate.contains(&format!(" {machine} ")), "{candidate}");
    }
}

#[test]
fn a_configured_stun_server_adds_a_server_reflexive_candidate() {
    let (port, asked) = fake_stun_server([198, 51, 100, 20], 40_000);
    let machine = common::machine_address();
    let server = Server::start_with(
        |t| {
            ice_on_machine_address(t)
                .replace("stun = \"\"", &format!("stun = \"stun:{machine}:{port}\""))
        },
        &[],
    );
    let (status, answer) = server.request("POST", "/whep", &[OFFER_TYPE], Some(VIEWER_OFFER));
    assert_eq!(status, 201, "{answer}");
    let found = candidates(&answer);
    assert!(
        found
            .iter()
            .any(|c| c.contains(" 198.51.100.20 40000 typ srflx")),
        "{answer}"
    );
    assert!(
        found
            .iter()
            .any(|c| c.contains(&format!(" {machine} ")) && c.contains("typ host")),
        "the host candidate stays: {answer}"
    );
    assert!(asked.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// A STUN server that answers every binding request with the same mapped address, as one
/// in front of a NAT would; returns its port and how many requests it answered.
fn fake_stun_server(
    ip: [u8; 4],
    port: u16,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let bound = socket.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        let mut request = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut request) {
            // A binding request: type 0x0001 and the magic cookie.
            if n < 20 || request[..2] != [0, 1] || request[4..8] != MAGIC {
                continue;
            }
            let xor_port = (port ^ 0x2112).to_be_bytes();
            let mut response = vec![0x01, 0x01, 0, 12];
            response.extend_from_slice(&request[4..20]); // cookie and transaction id
            response.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 0x01, xor_port[0], xor_port[1]]);
            response.extend(ip.iter().zip(MAGIC).map(|(a, m)| a ^ m));
            // Counted before it is answered: the test may look as soon as the answer is out.
            count.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&response, from);
        }
    });
    (bound, asked)
}
