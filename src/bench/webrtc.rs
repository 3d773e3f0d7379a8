//! `visiond bench --webrtc`: the latency visiond adds from a WHIP frame's arrival to its WHEP
//! packets leaving, at 1280x720 with no model on, and the CPU each viewer costs. visiond runs
//! as a child process; this process publishes a pre-encoded test pattern (so its own encoding
//! does not compete for the CPU) and plays it back with webrtc-rs peers. Prints, never asserts.

use crate::media::test_pattern::TestPattern;
use crate::settings::typed::Webrtc;
use crate::webrtc::peer::{self, Events};
use crate::webrtc::whep::OutgoingVideo;
use crate::webrtc::{whip, AccessUnit, H264};
use anyhow::Context;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_remote::TrackRemoteEvent;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u32 = 30;
/// The pattern is encoded once and sent in a loop; it starts with a keyframe each time.
const LOOP_FRAMES: u64 = 60;
const WINDOW: Duration = Duration::from_secs(5);
/// Linux's clock ticks a second in /proc/PID/stat.
const TICKS: f64 = 100.0;

pub fn run(viewers: usize) -> anyhow::Result<()> {
    let visiond = Visiond::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(measure(&visiond, viewers.max(2)));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn measure(visiond: &Visiond, viewers: usize) -> anyhow::Result<()> {
    println!("encoding {LOOP_FRAMES} frames of the test pattern at {WIDTH}x{HEIGHT} ...");
    let units = tokio::task::spawn_blocking(encode_pattern).await??;
    let _publisher = publish(visiond.port, units).await?;
    let mut players = vec![play(visiond.port).await?];
    tokio::time::sleep(Duration::from_secs(3)).await; // the encoder and the viewer settle
    let one = visiond.cpu_over(WINDOW).await;
    for _ in 1..viewers {
        players.push(play(visiond.port).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let many = visiond.cpu_over(WINDOW).await;
    let status = visiond.get("/api/v1/status").await?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let latency = &status["peers"]["latency"];
    let results: serde_json::Value = serde_json::from_str(&visiond.get("/api/v1/results").await?)?;

    println!("\nvisiond, {WIDTH}x{HEIGHT} at {FPS} fps in by WHIP, no model on:");
    println!(
        "- input {}, frames of {}x{}, pipeline {:.1} fps",
        status["input"]["state"],
        results["width"],
        results["height"],
        status["pipeline"]["fps"].as_f64().unwrap_or(0.0)
    );
    println!(
        "- added latency, WHIP arrival -> WHEP packets leaving: mean {:.1} ms, max {:.1} ms ({} samples)",
        latency["mean_ms"].as_f64().unwrap_or(f64::NAN),
        latency["max_ms"].as_f64().unwrap_or(f64::NAN),
        latency["samples"]
    );
    println!("- CPU with 1 viewer: {:.0}% of a core", one * 100.0);
    println!(
        "- CPU with {viewers} viewers: {:.0}% of a core",
        many * 100.0
    );
    println!(
        "- CPU per extra viewer: {:.1}% of a core",
        (many - one) * 100.0 / (viewers - 1) as f64
    );
    let packets: Vec<u64> = players
        .iter()
        .map(|p| p.packets.load(Ordering::Relaxed))
        .collect();
    println!("- RTP packets each viewer received: {packets:?}");
    Ok(())
}

fn encode_pattern() -> anyhow::Result<Vec<AccessUnit>> {
    let pattern = TestPattern::new(WIDTH, HEIGHT, FPS);
    let mut h264 = H264::new(4_000_000, FPS)?;
    let mut units = Vec::new();
    for number in 0..LOOP_FRAMES {
        if let Some(mut unit) = h264.encode(&pattern.draw(number), false)? {
            unit.duration = Duration::from_secs(1) / FPS;
            units.push(unit);
        }
    }
    Ok(units)
}

/// A peer of the benchmark, closed when dropped, with the RTP packets it received.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    packets: Arc<AtomicU64>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let pc = self.pc.clone();
        tokio::spawn(async move { pc.close().await });
    }
}

fn settings() -> Webrtc {
    Webrtc {
        stun: String::new(),
        ice_hosts: Vec::new(),
        nat_1to1_ip: String::new(),
        max_viewers: 16,
    }
}

async fn publish(port: u16, units: Vec<AccessUnit>) -> anyhow::Result<Peer> {
    let (pc, mut events) = peer::build(&settings(), None).await?;
    let video = OutgoingVideo::add_to(&pc).await?;
    signal(port, "/whip", &pc, &mut events).await?;
    anyhow::ensure!(events.connected().await, "the WHIP peer did not connect");
    let payload_type = video.payload_type().await.context("no payload type")?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
        for unit in units.iter().cycle() {
            tick.tick().await;
            if video.send(payload_type, unit).await.is_err() {
                break;
            }
        }
    });
    Ok(Peer {
        pc,
        packets: Arc::default(),
    })
}

async fn play(port: u16) -> anyhow::Result<Peer> {
    let (pc, mut events) = peer::build(&settings(), None).await?;
    whip::receive_video(&pc).await?;
    signal(port, "/whep", &pc, &mut events).await?;
    let packets = Arc::new(AtomicU64::new(0));
    let counter = packets.clone();
    tokio::spawn(async move {
        let Some(track) = events.tracks.recv().await else {
            return;
        };
        while let Some(event) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(_) = event {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(Peer { pc, packets })
}

/// Offers to visiond's WHIP or WHEP endpoint and applies its answer.
async fn signal(
    port: u16,
    path: &str,
    pc: &Arc<dyn PeerConnection>,
    events: &mut Events,
) -> anyhow::Result<()> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    events.gathered().await;
    let offer = pc.local_description().await.context("no offer")?.sdp;
    let path = path.to_owned();
    let (status, answer) =
        tokio::task::spawn_blocking(move || http(port, "POST", &path, Some(&offer))).await??;
    anyhow::ensure!(status == 201, "{status}: {answer}");
    pc.set_remote_description(RTCSessionDescription::answer(answer)?)
        .await?;
    Ok(())
}

/// One HTTP/1.1 request to visiond on localhost: (status, body).
fn http(port: u16, method: &str, path: &str, sdp: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let body = sdp.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// visiond as a child process on a config of its own; stopped when dropped.
struct Visiond {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Visiond {
    fn start() -> anyhow::Result<Visiond> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("visiond-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("visiond.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[input]\nuri = \"webrtc\"\n\
                 width = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n"
            ),
        )?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()?;
        let visiond = Visiond { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http(port, "GET", "/api/v1/status", None).ok().map(|r| r.0) != Some(200) {
            anyhow::ensure!(Instant::now() < deadline, "visiond did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(visiond)
    }

    async fn get(&self, path: &'static str) -> anyhow::Result<String> {
        let port = self.port;
        let (_, body) =
            tokio::task::spawn_blocking(move || http(port, "GET", path, None)).await??;
        Ok(body)
    }

    /// visiond's CPU time over `window`, in cores.
    async fn cpu_over(&self, window: Duration) -> f64 {
        let before = self.cpu_ticks();
        tokio::time::sleep(window).await;
        (self.cpu_ticks() - before) / TICKS / window.as_secs_f64()
    }

    /// User plus system clock ticks so far.
    fn cpu_ticks(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        field(11) + field(12)
    }
}

impl Drop for Visiond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
