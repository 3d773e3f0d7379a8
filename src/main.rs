//! visiond: a live multi-DNN video analyser controlled from a browser.

mod app;
mod bench;
mod engine;
#[cfg(feature = "gpu")]
mod gpu;
mod hostname;
mod infer;
mod logging;
mod media;
mod mqtt;
mod pipeline;
mod settings;
mod systemd;
mod vision;
mod web;
mod webrtc;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value as Json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Live multi-DNN video analyser controlled from a browser"
)]
struct Cli {
    /// The config file: the single truth, reloaded when it changes.
    #[arg(
        long,
        env = "VISIOND_CONFIG",
        default_value = "/etc/visiond/visiond.toml",
        global = true
    )]
    config: PathBuf,
    #[command(flatten, next_help_heading = "Overrides (this run only)")]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Quick-try flags, applied over the file for this run only (a NET turns that model on).
#[derive(Args)]
struct Overrides {
    /// `[engine] backend`; `bench` measures this one (default: onnxruntime).
    #[arg(long, global = true, value_parser = ["auto", "tensorrt", "cuda", "onnxruntime", "tract"])]
    backend: Option<String>,
    /// Port of the page, REST and signaling (all interfaces).
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Input URI: webrtc | test | images:<dir or glob> | file:<path> | v4l2:/dev/videoN | rtsp://...
    #[arg(long, global = true)]
    input: Option<String>,
    #[arg(long, value_name = "NET", global = true)]
    classification: Option<String>,
    #[arg(long, value_name = "NET", global = true)]
    detection: Option<String>,
    #[arg(long, value_name = "NET", global = true)]
    segmentation: Option<String>,
    #[arg(long, value_name = "NET", global = true)]
    pose: Option<String>,
    #[arg(long, value_name = "NET", global = true)]
    action: Option<String>,
    #[arg(long, value_name = "NET", global = true)]
    background: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file: exit 0, or print PATH:LINE:COL: message for each problem and exit 1.
    CheckConfig {
        /// The file to check (default: --config).
        path: Option<PathBuf>,
    },
    /// Benchmark every catalog model on each engine and the whole pipeline; prints a table.
    Bench {
        /// Inference threads (the same for every engine).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs per measurement (the median is reported).
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// The picture the pipeline measurement uses.
        #[arg(long, default_value = "tests/data/person.jpg")]
        picture: PathBuf,
        /// Measure WebRTC instead: the latency visiond adds from WHIP in to WHEP out at
        /// 1280x720, and the CPU each viewer costs.
        #[arg(long)]
        webrtc: bool,
        /// Measure instead how long a saved config file takes to be live (in place, by rename).
        #[arg(long)]
        reload: bool,
        /// Viewers for the WebRTC measurement (at least 2).
        #[arg(long, default_value_t = 4)]
        viewers: usize,
    },
    /// List the model catalog: name, task, file, and whether the file is present.
    Models,
    /// Run the enabled models on still pictures (JPEG/PNG): annotated copies to --out, and
    /// with --json one JSON object per picture on stdout, shaped like /api/v1/results.
    Infer {
        /// Pictures to analyse.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Folder for the annotated pictures.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the results as JSON, one line per picture.
        #[arg(long)]
        json: bool,
    },
}

impl Overrides {
    fn to_settings(&self) -> Vec<(&'static str, &'static str, Json)> {
        let mut out = Vec::new();
        if let Some(backend) = &self.backend {
            out.push(("engine", "backend", json!(backend)));
        }
        if let Some(port) = self.port {
            out.push(("server", "listen", json!(format!("0.0.0.0:{port}"))));
        }
        if let Some(uri) = &self.input {
            out.push(("input", "uri", json!(uri)));
        }
        let models = [
            ("classification", &self.classification),
            ("detection", &self.detection),
            ("segmentation", &self.segmentation),
            ("pose", &self.pose),
            ("action", &self.action),
            ("background", &self.background),
        ];
        for (section, network) in models {
            if let Some(network) = network {
                out.push((section, "enabled", json!(true)));
                out.push((section, "network", json!(network)));
            }
        }
        out
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None => app::run(&cli.config, &cli.overrides.to_settings()),
        Some(Command::CheckConfig { path }) => {
            return check_config(path.as_ref().unwrap_or(&cli.config))
        }
        Some(Command::Models) => infer::list_models(),
        Some(Command::Bench {
            webrtc: true,
            viewers,
            ..
        }) => bench::webrtc::run(*viewers),
        Some(Command::Bench { reload: true, .. }) => bench::reload::run(),
        Some(Command::Bench {
            threads,
            iterations,
            picture,
            ..
        }) => bench_backend(cli.overrides.backend.as_deref()).and_then(|backend| {
            bench::run(&bench::Options {
                threads: *threads,
                iterations: *iterations,
                picture: picture.clone(),
                backend,
            })
        }),
        Some(Command::Infer { images, out, json }) => infer::run(&infer::Request {
            config: &cli.config,
            overrides: &cli.overrides.to_settings(),
            images,
            out: out.as_deref(),
            json: *json,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visiond: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bench` measures one named backend: `auto` would hide which.
fn bench_backend(name: Option<&str>) -> anyhow::Result<engine::Backend> {
    let name = name.unwrap_or("onnxruntime");
    engine::Backend::parse(name)
        .ok_or_else(|| anyhow::anyhow!("bench measures one backend, not {name:?}"))
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let text = match settings::file::read(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match settings::load::parse(&text) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for line in settings::store::located(path, &problems) {
                println!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}
