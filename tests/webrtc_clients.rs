//! WHIP and WHEP with clients people use, beside aiortc (tests/webrtc.rs) and Chromium
//! (tests/webrtc_browser.rs): ffmpeg 9's WHIP muxer publishes, and werift (TypeScript,
//! npm) watches.
//! tools/setup puts both in vendor/.

mod common;

use common::{ice_on_machine_address, small_input, with_input, Server};
use serde_json::Value as Json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn vendored(path: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    assert!(
        path.exists(),
        "{} is missing: run tools/setup",
        path.display()
    );
    path
}

/// ffmpeg publishing its moving test picture (320x240, 30 FPS, H.264 Constrained Baseline)
/// to visiond's `/whip` for `seconds`.
fn ffmpeg_publishing(server: &Server, seconds: u32) -> Child {
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
    command
        .arg(server.url("/whip"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg")
}

/// In ffmpeg's default DTLS role (`a=setup:passive`: visiond is the DTLS client). With
/// `-whip_flags dtls_active` visiond answers `passive` as it must (tests/webrtc.rs checks
/// the answer), but ICE does not complete: ffmpeg starts DTLS as soon as its own STUN check
/// is answered, and visiond's checks of ffmpeg never succeed (README, "WebRTC").
#[test]
fn ffmpeg_publishes_by_whip() {
    let server = Server::start_with(|t| small_input(ice_on_machine_address(t)), &[]);
    let mut ffmpeg = ffmpeg_publishing(&server, 8);
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
    let werift = vendored("vendor/werift");
    let output = Command::new("node")
        .arg(vendored("tests/support/werift_viewer.mjs"))
        .arg(server.url(""))
        .arg("5")
        .env("WERIFT_DIR", &werift)
        .output()
        .expect("run node (tools/setup installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "werift viewer failed:\n{}\nvisiond log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    let report: Json = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}"));
    assert_eq!(report["state"], "connected", "{report}");
    // 15 frames a second for 5 s, less the connection's setup.
    assert!(report["units"].as_u64().unwrap() > 30, "{report}");
    assert_eq!(report["first_unit_keyframe"], true, "{report}");
    assert_eq!(report["delete"], 200, "{report}");
    assert_eq!(server.get_json("/api/v1/status")["peers"]["viewers"], 0);
}
