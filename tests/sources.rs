//! The video sources on the real binary: H.264 files (MP4 and elementary streams) that the
//! tests make with ffmpeg, an RTSP camera served by GStreamer that the test kills and
//! restarts, pictures from tests/data, and switching between them over REST, also while
//! WebRTC viewers watch.

mod common;

use common::{aiortc, free_port, ice_on_machine_address, small_input, with_input, Server};
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Encodes `frames` frames of ffmpeg's test picture at 160x120 and `fps`, H.264 constrained
/// baseline, into `path` (the container follows the extension: `.mp4` or `.h264`).
fn make_video(path: &Path, frames: u32, fps: u32) {
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc=size=160x120:rate={fps}"))
        .args(["-frames:v", &frames.to_string(), "-c:v", "libx264"])
        .args(["-profile:v", "baseline", "-pix_fmt", "yuv420p"])
        .arg(path)
        .output()
        .expect("ffmpeg runs (tools/setup installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn status(server: &Server) -> Json {
    server.get_json("/api/v1/status")
}

fn wait_input(server: &Server, check: impl Fn(&Json) -> bool) -> Json {
    server.wait_for("/api/v1/status", LIMIT, |s| check(s))
}

fn frames(status: &Json) -> u64 {
    status["pipeline"]["frames"].as_u64().unwrap()
}

fn put_uri(server: &Server, uri: &str) {
    let (code, body) = server.put("/api/v1/config/input/uri", &json!(uri).to_string());
    assert_eq!(code, 200, "{body}");
}

#[test]
fn video_files_play_at_their_size_and_a_single_pass_ends_waiting() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["clip.mp4", "clip.h264"] {
        let path = dir.path().join(name);
        make_video(&path, 30, 15);
        let uri = format!("file:{}", path.display());
        let server = Server::start_with(
            |t| t.replace("loop = true ", "loop = false "),
            &["--input", &uri],
        );
        let playing = wait_input(&server, |s| {
            s["input"]["state"] == "playing" && frames(s) > 3
        });
        assert_eq!(
            (&playing["input"]["width"], &playing["input"]["height"]),
            (&json!(160), &json!(120)),
            "{name}: the file's own size"
        );
        assert_eq!(playing["input"]["uri"], json!(uri));
        let ended = wait_input(&server, |s| s["input"]["state"] == "waiting");
        let detail = ended["input"]["detail"].as_str().unwrap();
        assert!(
            detail.contains("end") && detail.contains("input.loop"),
            "{detail}"
        );
        assert_eq!(ended["input"]["error"], Json::Null);
        // Every picture of the file was shown once, none after (the pipeline may have been
        // busy for a few of them: the latest frame wins).
        std::thread::sleep(Duration::from_millis(300));
        let shown = frames(&status(&server));
        assert!(shown <= 30 && shown > 10, "{name}: {shown} frames");
        std::thread::sleep(Duration::from_millis(500));
        let later = status(&server);
        assert_eq!(frames(&later), shown, "{name}: no frame after the end");
        assert_eq!(later["input"]["state"], json!("waiting"));
        assert_eq!(server.get("/api/v1/snapshot.jpg").0, 200);
    }
}

#[test]
fn a_looping_file_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.mp4");
    make_video(&path, 10, 30);
    let uri = format!("file:{}", path.display());
    let server = Server::start_with(|t| t, &["--input", &uri]);
    // Three passes over the ten pictures, still playing.
    let looped = wait_input(&server, |s| frames(s) > 30);
    assert_eq!(looped["input"]["state"], json!("playing"));
}

#[test]
fn missing_and_corrupt_inputs_are_errors_and_rest_switches_sources_live() {
    let server = Server::start_with(|t| t, &["--input", "file:/nonexistent/clip.mp4"]);
    let missing = wait_input(&server, |s| s["input"]["state"] == "error");
    let reason = missing["input"]["error"].as_str().unwrap();
    assert!(reason.contains("/nonexistent/clip.mp4"), "{reason}");

    let corrupt_h264 = server.dir.path().join("noise.h264");
    std::fs::write(
        &corrupt_h264,
        (0..50_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let corrupt_mp4 = server.dir.path().join("half.mp4");
    make_video(&corrupt_mp4, 30, 15);
    let bytes = std::fs::read(&corrupt_mp4).unwrap();
    std::fs::write(&corrupt_mp4, &bytes[..bytes.len() / 2]).unwrap();
    let broken = [
        (
            format!("file:{}", corrupt_h264.display()),
            "no H.264 picture",
        ),
        (
            format!("file:{}", corrupt_mp4.display()),
            "not a readable MP4",
        ),
        // No camera here: a missing device, and a device that is no camera.
        (
            "v4l2:/dev/video-none".to_owned(),
            "cannot open /dev/video-none",
        ),
        ("v4l2:/dev/null".to_owned(), "not a V4L2 device"),
    ];
    for (uri, why) in broken {
        put_uri(&server, &uri);
        let failed = wait_input(&server, |s| {
            s["input"]["uri"] == uri.as_str() && s["input"]["state"] == "error"
        });
        let reason = failed["input"]["error"].as_str().unwrap();
        assert!(reason.contains(why), "{reason}");
    }

    // From a broken file to pictures to the test pattern, frames flowing after each switch.
    for uri in [format!("images:{}", data("")), "test".to_owned()] {
        put_uri(&server, &uri);
        let before = frames(&status(&server));
        let playing = wait_input(&server, |s| {
            s["input"]["uri"] == uri.as_str()
                && s["input"]["state"] == "playing"
                && frames(s) > before + 3
        });
        assert_eq!(playing["input"]["error"], Json::Null);
    }
}

/// GStreamer's RTSP server as a stand-in camera; killed when dropped.
struct Camera {
    child: Child,
}

impl Camera {
    fn start(port: u16, user: &str, password: &str) -> Camera {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/rtsp_camera.py");
        let mut child = Command::new(script)
            .args([&port.to_string(), "/cam", user, password])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the RTSP camera starts (tools/setup installs GStreamer and python3-gi)");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the RTSP camera did not come up");
        Camera { child }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_rtsp_camera_plays_reconnects_after_a_restart_and_keeps_its_password_secret() {
    let port = free_port();
    let secret = "s3cret-word";
    let mut camera = Camera::start(port, "alice", secret);
    let uri = format!("rtsp://alice:{secret}@127.0.0.1:{port}/cam");
    let shown_uri = format!("rtsp://alice:***@127.0.0.1:{port}/cam");
    let server = Server::start_with(|t| t, &["--input", &uri]);
    let playing = wait_input(&server, |s| {
        s["input"]["state"] == "playing" && frames(s) > 5
    });
    assert_eq!(playing["input"]["uri"], json!(shown_uri));
    assert_eq!(
        (&playing["input"]["width"], &playing["input"]["height"]),
        (&json!(320), &json!(240))
    );

    // The camera goes away: an error (or a new attempt), then back to playing when it returns.
    drop(camera);
    let lost = wait_input(&server, |s| {
        s["input"]["state"] == "error" || s["input"]["state"] == "connecting"
    });
    std::thread::sleep(Duration::from_secs(1));
    let before = frames(&status(&server));
    assert!(before >= frames(&lost));
    camera = Camera::start(port, "alice", secret);
    wait_input(&server, |s| {
        s["input"]["state"] == "playing" && frames(s) > before + 5
    });

    // Over UDP as well, switched over REST.
    let udp = format!("rtspu://alice:{secret}@127.0.0.1:{port}/cam");
    put_uri(&server, &udp);
    let before = frames(&status(&server));
    let over_udp = wait_input(&server, |s| {
        s["input"]["uri"] == format!("rtspu://alice:***@127.0.0.1:{port}/cam").as_str()
            && s["input"]["state"] == "playing"
            && frames(s) > before + 5
    });

    // A wrong password is an error that names no password.
    put_uri(
        &server,
        &format!("rtsp://alice:wrong-word@127.0.0.1:{port}/cam"),
    );
    let refused = wait_input(&server, |s| {
        s["input"]["uri"] == shown_uri.as_str() && s["input"]["state"] == "error"
    });
    drop(camera);
    let reason = refused["input"]["error"].as_str().unwrap();
    assert!(reason.contains("401"), "{reason}");

    let log = server.log_text();
    for text in [
        log.as_str(),
        &over_udp.to_string(),
        &refused.to_string(),
        &status(&server).to_string(),
    ] {
        assert!(
            !text.contains(secret) && !text.contains("wrong-word"),
            "{text}"
        );
    }
    assert!(log.contains(&shown_uri), "the log names the camera:\n{log}");
}

#[test]
fn a_flip_turns_the_frames_of_a_running_source() {
    let server = Server::start_with(
        |t| {
            t.replace("width = 1280 ", "width = 64 ")
                .replace("height = 720 ", "height = 48 ")
        },
        &["--input", &format!("images:{}", data("dog.jpg"))],
    );
    wait_input(&server, |s| {
        s["input"]["state"] == "playing" && frames(s) > 1
    });
    let snapshot = |server: &Server| {
        let response = ureq::get(&server.url("/api/v1/snapshot.jpg"))
            .call()
            .unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).unwrap();
        image::load_from_memory(&bytes).unwrap().into_rgb8()
    };
    let upright = snapshot(&server);
    let (code, _) = server.put("/api/v1/config/input/flip", "\"rotate-180\"");
    assert_eq!(code, 200);
    // A few frames for the setting to reach the pipeline, then the picture is turned.
    let after = frames(&status(&server));
    wait_input(&server, |s| frames(s) > after + 3);
    let turned = snapshot(&server);
    let (w, h) = upright.dimensions();
    let differs = |a: &image::Rgb<u8>, b: &image::Rgb<u8>| {
        a.0.iter()
            .zip(b.0)
            .map(|(x, y)| x.abs_diff(y) as u32)
            .sum::<u32>()
    };
    let mut turned_error = 0;
    let mut same_error = 0;
    for (x, y, pixel) in upright.enumerate_pixels() {
        turned_error += differs(pixel, turned.get_pixel(w - 1 - x, h - 1 - y));
        same_error += differs(pixel, turned.get_pixel(x, y));
    }
    assert!(
        turned_error * 3 < same_error,
        "{turned_error} vs {same_error}"
    );
    assert_eq!(status(&server)["input"]["state"], json!("playing"));
}

#[test]
fn switching_the_source_keeps_webrtc_viewers_connected_and_watching() {
    let server = Server::start_with(
        |t| small_input(ice_on_machine_address(with_input(t, "test"))),
        &[],
    );
    let clip = server.dir.path().join("clip.mp4");
    make_video(&clip, 300, 15);
    // Two viewers watch for 12 s; meanwhile the source changes twice, over REST and by
    // editing the file: the test pattern (320x240), an MP4 (160x120), the pictures.
    let report = std::thread::scope(|scope| {
        let switches = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(4));
            put_uri(&server, &format!("file:{}", clip.display()));
            wait_input(&server, |s| {
                s["input"]["state"] == "playing" && s["input"]["width"] == 160
            });
            std::thread::sleep(Duration::from_secs(3));
            let text = std::fs::read_to_string(&server.config).unwrap();
            let pictures = format!("images:{}", data("*.jpg"));
            let uri_line = format!("uri = {}", json!(format!("file:{}", clip.display())));
            assert!(text.contains(&uri_line), "the PUT is in the file");
            common::save_by_rename(
                &server.config,
                &text.replace(&uri_line, &format!("uri = {}", json!(pictures))),
            );
            wait_input(&server, |s| {
                s["input"]["state"] == "playing" && s["input"]["uri"] == pictures.as_str()
            });
            status(&server)["peers"]["viewers"].clone()
        });
        let report = aiortc(&server, &["play", "--viewers", "2", "--seconds", "12"]);
        (switches.join().unwrap(), report)
    });
    let (viewers_after_switching, report) = report;
    assert_eq!(viewers_after_switching, 2, "both viewers stayed: {report}");
    for viewer in report["viewers"].as_array().unwrap() {
        let sizes = viewer["sizes"].as_array().unwrap();
        // The frame size as it changed: pattern, clip, pictures (fitted to 320x240).
        assert_eq!(
            sizes,
            &[json!([320, 240]), json!([160, 120]), json!([320, 240])],
            "{report}"
        );
        assert!(viewer["frames"].as_u64().unwrap() > 60, "{report}");
        let gap = viewer["longest_gap"].as_f64().unwrap();
        assert!(gap < 3.0, "the video went on across the switches: {report}");
        assert_eq!(
            viewer["delete"], 200,
            "its session was still there: {report}"
        );
    }
}
