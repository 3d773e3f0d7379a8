//! The page in a real headless Chromium with a fake camera: it plays the output by WHEP on
//! load, sends the camera in by WHIP when asked, and the played <video> shows real decoded
//! pictures that move, and then the pipeline's overlay over them.

mod common;

use common::webdriver::Browser;
use common::{ice_on_machine_address, small_input, Server};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The <video>'s current picture, drawn on a canvas and summed up in the page.
const SAMPLE: &str = r#"
const v = document.getElementById('video');
if (!v || !v.videoWidth) return null;
const c = document.createElement('canvas');
c.width = v.videoWidth; c.height = v.videoHeight;
const g = c.getContext('2d');
g.drawImage(v, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let r = 0, gr = 0, b = 0, n = 0, magenta = 0, hash = 0;
for (let i = 0; i < d.length; i += 4 * 37) {
  r += d[i]; gr += d[i + 1]; b += d[i + 2]; n++;
  if (d[i] > 150 && d[i + 2] > 150 && d[i + 1] < 110) magenta++;
  hash = (hash * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) | 0;
}
return {width: c.width, height: c.height, brightness: (r + gr + b) / (3 * n), magenta: magenta / n, hash};
"#;

#[test]
fn the_page_sends_the_camera_by_whip_and_plays_the_annotated_output_by_whep() {
    let server = Server::start_with(|t| small_input(ice_on_machine_address(t)), &[]);
    let browser = Browser::start(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ]);
    browser.open(&server.url("/"));
    // On load the page plays the output: the "waiting for video" frame, at the input's size.
    browser.wait_until(SAMPLE, LIMIT, |s| s["width"] == 320);

    browser.click("#webcam");
    server.wait_for("/api/v1/status", LIMIT, |s| {
        s["input"]["state"] == "playing" && s["peers"]["publisher"] == true
    });
    // The fake camera's 640x480 pictures come back through the pipeline and the encoder.
    let first = browser.wait_until(SAMPLE, LIMIT, |s| s["width"] == 640);
    assert!(
        first["brightness"].as_f64().unwrap() > 20.0,
        "not black: {first}"
    );
    let moved = browser.wait_until(SAMPLE, LIMIT, |s| s["hash"] != first["hash"]);
    assert_eq!(moved["height"], 480);
    browser.wait_until(
        "return document.getElementById('video-stats').textContent",
        LIMIT,
        |t| {
            t.as_str()
                .is_some_and(|t| t.contains("640×480") && t.contains("fps"))
        },
    );

    // The overlay: with no person in view, the whole background turns magenta.
    for (key, value) in [
        ("mode", json!("color")),
        ("color", json!("#ff00ff")),
        ("enabled", json!(true)),
    ] {
        let (status, body) = server.put(
            &format!("/api/v1/config/background/{key}"),
            &value.to_string(),
        );
        assert_eq!(status, 200, "{key}: {body}");
    }
    let tinted = browser.wait_until(SAMPLE, Duration::from_secs(120), |s| {
        s["magenta"].as_f64().is_some_and(|m| m > 0.5)
    });
    assert_eq!(tinted["width"], 640);

    // Stopping the webcam puts the input back to waiting; the video goes on.
    browser.click("#webcam");
    server.wait_for("/api/v1/status", LIMIT, |s| {
        s["input"]["state"] == "waiting" && s["peers"]["publisher"] == false
    });
    browser.wait_until(SAMPLE, LIMIT, |s| s["width"] == 320);
}

#[test]
fn an_insecure_page_says_why_the_webcam_cannot_be_used() {
    let everywhere = |t: String| t.replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    let server = Server::start_with(everywhere, &[]);
    let browser = Browser::start(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ]);
    // Plain http on the machine's own address is not a secure context (localhost would be).
    browser.open(&format!(
        "http://{}:{}/",
        common::machine_address(),
        server.port
    ));
    browser.wait_until("return document.readyState", LIMIT, |s| s == "complete");
    browser.click("#webcam");
    browser.wait_until(
        "return document.getElementById('webcam-note').textContent",
        LIMIT,
        |t| {
            t.as_str()
                .is_some_and(|t| t.contains("secure") && t.contains("https://"))
        },
    );
    assert_eq!(
        server.get_json("/api/v1/status")["peers"]["publisher"],
        false
    );
}
