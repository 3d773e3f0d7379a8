//! WHIP and WHEP with clients people use, beside aiortc (tests/webrtc.rs) and Chromium
//! (tests/webrtc_browser.rs): ffmpeg 9's WHIP muxer publishes (in both DTLS roles), and
//! werift (TypeScript, npm) watches.
//! tools/setup puts both in vendor/.

mod common;

use common::{client_report, ice_on_machine_address, small_input, vendored, with_input, Server};
use serde_json::Value as Json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// ffmpeg publishing its moving test picture (320x240, 30 FPS, H.264 Constrained Baseline)
/// to visiond's `/whip` for `seconds`, with `-whip_flags` set to `flags` if any.
fn ffmpeg_publishing(server: &Server, seconds: u32, flags: Option<&str>) -> Child {
    let mut command = Command::new(vendored("vendor/ffmpeg-whip/ffmpeg"));
    command.args([
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
    ]);
    command.args(["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]);
    command.args(["-t", &seconds.to_string(), "-c:v", "libx264"]);
    command.args(["-profile:v", "baseline", "-tune", "zerolatency", "-g", "30"]);
    command.args(["-pix_fmt", "yuv420p", "-f", "whip"]);
    if let Some(flags) = flags {
        command.args(["-whip_flags", flags]);
    }
    command
        .arg(server.url("/whip"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg")
}

/// In ffmpeg's default DTLS role (`a=setup:passive`: visiond is the DTLS client).
#[test]
fn ffmpeg_publishes_by_whip() {
    ffmpeg_publishes(None);
}

/// With `-whip_flags dtls_active` ffmpeg is the DTLS client, and visiond answers `passive`
/// (tests/webrtc.rs checks the answer). ffmpeg nominates the pair in its first STUN check,
/// before visiond's own check of it has succeeded, and sends no other: visiond's ICE keeps
/// that nomination (third_party/README.md), or the pair is never selected.
#[test]
fn ffmpeg_publishes_by_whip_as_the_dtls_client() {
    ffmpeg_publishes(Some("dtls_active"));
}

fn ffmpeg_publishes(flags: Option<&str>) {
    let server = Server::start_with(|t| small_input(ice_on_machine_address(t)), &[]);
    let mut ffmpeg = ffmpeg_publishing(&server, 8, flags);
    let frames = |s: &Json| s["pipeline"]["frames"].as_u64().unwrap_or(0);
    let start = frames(&server.get_json("/api/v1/status"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let playing = loop {
        let status = server.get_json("/api/v1/status");
        if status["input"]["state"] == "playing" && status["peers"]["publisher"] == true {
            break status;
        }
        if Instant::now() > deadline {
            let _ = ffmpeg.kill();
            let output = ffmpeg.wait_with_output().unwrap();
            panic!(
                "not playing after 15 s: {status}\nffmpeg: {}\nvisiond: {}",
                String::from_utf8_lossy(&output.stderr),
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (&playing["input"]["width"], &playing["input"]["height"]),
        (&Json::from(320), &Json::from(240)),
        "the publisher's own size"
    );
    // Its pictures go through the pipeline.
    server.wait_for("/api/v1/status", Duration::from_secs(10), |s| {
        frames(s) > start + 30
    });
    let output = ffmpeg.wait_with_output().expect("ffmpeg ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It ended with DELETE: the input waits again at once.
    server.wait_for("/api/v1/status", Duration::from_secs(5), |s| {
        s["input"]["state"] == "waiting" && s["peers"]["publisher_state"].is_null()
    });
}

#[test]
fn werift_watches_by_whep_from_a_keyframe() {
    let server = Server::start_with(
        |t| small_input(ice_on_machine_address(with_input(t, "test"))),
        &[],
    );
    let mut command = Command::new("node");
    command
        .arg(vendored("tests/support/werift_viewer.mjs"))
        .arg(server.url(""))
        .arg("5")
        .env("WERIFT_DIR", vendored("vendor/werift"));
    let report = client_report(&server, &mut command, "the werift viewer (node)");
    assert_eq!(report["state"], "connected", "{report}");
    // 15 frames a second for 5 s, less the connection's setup.
    assert!(report["units"].as_u64().unwrap() > 30, "{report}");
    assert_eq!(report["first_unit_keyframe"], true, "{report}");
    assert_eq!(report["delete"], 200, "{report}");
    assert_eq!(server.get_json("/api/v1/status")["peers"]["viewers"], 0);
}
