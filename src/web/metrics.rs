//! `GET /metrics` in the Prometheus text format.

use super::Context;
use std::fmt::Write;
use warp::reply::{Reply, Response};

pub fn render(ctx: &Context) -> Response {
    let runtime = ctx.shared.status();
    let config = ctx.store.status();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(
            out,
            "# HELP visiond_{name} {help}\n# TYPE visiond_{name} {kind}"
        );
        for (labels, value) in samples {
            let _ = writeln!(out, "visiond_{name}{labels} {value}");
        }
    };
    let one = |value: f64| vec![(String::new(), value)];
    let per_model = |value: &dyn Fn(&crate::pipeline::status::ModelStatus) -> f64| {
        runtime
            .models
            .iter()
            .map(|(name, model)| (format!("{{model=\"{name}\"}}"), value(model)))
            .collect::<Vec<_>>()
    };
    gauge(
        "frames_total",
        "Frames processed by the pipeline.",
        "counter",
        one(runtime.pipeline.frames as f64),
    );
    gauge(
        "dropped_frames_total",
        "Frames skipped because the pipeline was busy.",
        "counter",
        one(runtime.pipeline.dropped as f64),
    );
    gauge(
        "fps",
        "Frames per second over the last second.",
        "gauge",
        one(runtime.pipeline.fps),
    );
    gauge(
        "config_error",
        "1 while the config file on disk is broken.",
        "gauge",
        one(config.error.is_some() as u8 as f64),
    );
    gauge(
        "model_ready",
        "1 when the model is loaded and running.",
        "gauge",
        per_model(&|m| (m.state == crate::pipeline::status::ModelState::Ready) as u8 as f64),
    );
    gauge(
        "model_last_ms",
        "Milliseconds the model took on the last frame.",
        "gauge",
        per_model(&|m| m.last_ms),
    );
    gauge(
        "model_avg_ms",
        "Average milliseconds per frame of the model.",
        "gauge",
        per_model(&|m| m.avg_ms),
    );
    gauge(
        "model_provider",
        "1 for the provider each loaded model's session runs on (tensorrt, cuda, cpu, tract).",
        "gauge",
        runtime
            .models
            .iter()
            .filter(|(_, model)| !model.placement.provider.is_empty())
            .map(|(name, model)| {
                let provider = &model.placement.provider;
                (format!("{{model=\"{name}\",provider=\"{provider}\"}}"), 1.0)
            })
            .collect(),
    );
    gauge(
        "model_cpu_nodes",
        "Graph nodes ONNX Runtime left to the CPU beside the model's GPU provider.",
        "gauge",
        per_model(&|m| m.placement.cpu_nodes as f64),
    );
    let (viewers, publishing) = ctx.webrtc.counts();
    gauge(
        "webrtc_viewers",
        "WHEP viewer sessions.",
        "gauge",
        one(viewers as f64),
    );
    gauge(
        "webrtc_publisher",
        "1 while a WHIP publisher is connected.",
        "gauge",
        one(publishing as u8 as f64),
    );
    warp::reply::with_header(out, "content-type", "text/plain; version=0.0.4").into_response()
}
