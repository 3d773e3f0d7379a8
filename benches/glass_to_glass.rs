//! Glass-to-glass latency through visiond in a real Chromium (issue 4's benchmark; prints,
//! asserts nothing): the page paints its own clock, as 20 black or white squares, into a
//! 1280x720 canvas 60 times a second and publishes it by WHIP; visiond (no model on) decodes,
//! runs the pipeline, encodes and sends it back by WHEP to the page's <video>; for every frame
//! the video presents, the page reads the squares back (and their complement, painted below
//! them, so a frame that does not carry the clock is never counted) and subtracts that clock
//! from the moment the frame is shown. Both clocks are the page's, so no synchronisation is needed.
//! The figure includes Chromium's own encode, jitter buffer and decode on both legs.
//!
//!   cargo bench --bench glass_to_glass            (VISIOND_BENCH_SECONDS, default 20)

#[path = "../tests/common/mod.rs"]
mod common;

use common::webdriver::Browser;
use common::{ice_on_machine_address, process_usage, Server};
use std::time::{Duration, Instant};

/// Starts the measurement in the page; results collect in `window.glassToGlass`.
const MEASURE: &str = r#"
const W = 1280, H = 720, BITS = 20, SIZE = 40, STEP = 48, MASK = (1 << BITS) - 1;
const state = window.glassToGlass = {latencies: [], frames: 0, rejected: 0, error: null};
const canvas = document.createElement('canvas');
canvas.width = W; canvas.height = H;
const paint = canvas.getContext('2d');
(function draw() {
  const clock = Math.round(performance.now()) & MASK;
  paint.fillStyle = '#505860'; paint.fillRect(0, 0, W, H);
  paint.fillStyle = '#d09050'; paint.fillRect((clock / 3) % (W - 200), 300, 200, 200);
  for (let i = 0; i < BITS; i++) {
    const one = (clock >> i) & 1;
    paint.fillStyle = one ? '#ffffff' : '#000000';
    paint.fillRect(16 + i * STEP, 16, SIZE, SIZE);
    paint.fillStyle = one ? '#000000' : '#ffffff';
    paint.fillRect(16 + i * STEP, 16 + STEP, SIZE, SIZE);
  }
  requestAnimationFrame(draw);
})();
const publisher = new RTCPeerConnection();
const track = canvas.captureStream(60).getVideoTracks()[0];
const transceiver = publisher.addTransceiver(track, {direction: 'sendonly'});
transceiver.setCodecPreferences(
  RTCRtpSender.getCapabilities('video').codecs.filter(c => c.mimeType === 'video/H264'));
(async () => {
  await publisher.setLocalDescription(await publisher.createOffer());
  await new Promise(done => {
    if (publisher.iceGatheringState === 'complete') return done();
    publisher.onicegatheringstatechange = () =>
      publisher.iceGatheringState === 'complete' && done();
  });
  const answer = await fetch('/whip', {method: 'POST',
    headers: {'Content-Type': 'application/sdp'}, body: publisher.localDescription.sdp});
  if (answer.status !== 201) throw new Error('WHIP ' + answer.status);
  await publisher.setRemoteDescription({type: 'answer', sdp: await answer.text()});
})().catch(e => state.error = String(e));
const video = document.getElementById('video');
const read = document.createElement('canvas');
read.width = 16 + BITS * STEP; read.height = 16 + STEP + SIZE;
const readBack = read.getContext('2d', {willReadFrequently: true});
function shown(now, frame) {
  if (video.videoWidth === W) {
    readBack.drawImage(video, 0, 0);
    const pixels = readBack.getImageData(0, 0, read.width, read.height).data;
    const white = (x, y) => pixels[(y * read.width + x) * 4] > 128;
    let clock = 0, valid = true;
    for (let i = 0; i < BITS; i++) {
      const x = 16 + i * STEP + SIZE / 2, y = 16 + SIZE / 2;
      const one = white(x, y);
      valid = valid && one !== white(x, y + STEP);
      if (one) clock |= 1 << i;
    }
    if (valid) {
      const at = Math.round(frame.expectedDisplayTime) & MASK;
      state.latencies.push((at - clock + MASK + 1) & MASK);
      state.frames++;
    } else {
      state.rejected++;
    }
  }
  video.requestVideoFrameCallback(shown);
}
video.requestVideoFrameCallback(shown);
return true;
"#;

fn main() {
    let seconds: u64 = std::env::var("VISIOND_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let server = Server::start_with(ice_on_machine_address, &[]);
    let browser = Browser::start(&["--autoplay-policy=no-user-gesture-required"]);
    browser.open(&server.url("/"));
    browser.wait_until("return document.readyState", Duration::from_secs(30), |s| {
        s == "complete"
    });
    browser.eval(MEASURE);
    browser.wait_until(
        "return window.glassToGlass.error || window.glassToGlass.frames",
        Duration::from_secs(60),
        |v| v.as_u64().is_some_and(|n| n > 0) || v.is_string(),
    );
    let pid = server.child.id();
    let (cpu_before, started) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu_share =
        (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_second() / started.elapsed().as_secs_f64();
    let result = browser.eval("return window.glassToGlass");
    if let Some(error) = result["error"].as_str() {
        panic!("the page could not publish: {error}");
    }
    let mut latencies: Vec<f64> = result["latencies"]
        .as_array()
        .expect("latencies")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    // The first frames show the connection's start-up, not the steady state.
    let warm = latencies.len().min(30);
    latencies.drain(..warm);
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let status = server.get_json("/api/v1/status");
    let (_, _, rss_kib) = process_usage(pid);
    println!(
        "glass to glass, Chromium -> WHIP -> visiond (no model) -> WHEP -> Chromium, 1280x720, {seconds} s"
    );
    println!("| frames shown | without the clock | min ms | median ms | p90 ms | max ms | pipeline fps | visiond CPU (cores) | visiond RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {cpu_share:.2} | {:.0} |",
        latencies.len(),
        result["rejected"],
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0),
        status["pipeline"]["fps"].as_f64().unwrap_or(0.0),
        rss_kib as f64 / 1024.0
    );
}

/// User plus system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let after_name = &stat[stat.rfind(')').expect("a name in parentheses") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
