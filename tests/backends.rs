//! `[engine] backend` on a machine without a GPU (CI's): `auto` falls back to ONNX Runtime on
//! the CPU and says why; an explicit `cuda` or `tensorrt` puts the models in `error` with ONNX
//! Runtime's reason instead of running on the CPU; status and metrics say where each model runs.

mod common;

use common::Server;
use serde_json::{json, Value as Json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn classification(status: &Json) -> &Json {
    &status["models"]["classification"]
}

fn start(backend: &str) -> Server {
    Server::start_with(
        |t| t,
        &[
            "--input",
            "test",
            "--classification",
            "efficientnet-lite0",
            "--backend",
            backend,
        ],
    )
}

#[test]
fn auto_falls_back_to_onnxruntime_on_the_cpu_and_says_why() {
    let server = start("auto");
    let status = server.wait_for("/api/v1/status", LIMIT, |s| {
        classification(s)["state"] == "ready"
    });
    let engine = &status["engine"];
    assert_eq!(engine["backend"], json!("onnxruntime"), "{engine}");
    let reason = engine["reason"].as_str().unwrap();
    for refused in ["not tensorrt (", "not cuda ("] {
        assert!(reason.contains(refused), "{reason}");
    }
    let model = classification(&status);
    assert_eq!(model["provider"], json!("cpu"), "{model}");
    assert_eq!(model["cpu_nodes"], json!(0), "{model}");
    assert_eq!(model["fallback"], Json::Null, "{model}");
    assert!(model["nodes"].as_u64() > Some(10), "{model}");
    let metrics = server.get("/metrics").1;
    assert!(
        metrics.contains("visiond_model_provider{model=\"classification\",provider=\"cpu\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("visiond_model_cpu_nodes{model=\"classification\"} 0"),
        "{metrics}"
    );
}

#[test]
fn an_explicit_cuda_that_cannot_run_is_an_error_with_the_reason() {
    let server = start("cuda");
    let status = server.wait_for("/api/v1/status", LIMIT, |s| {
        classification(s)["state"] == "error"
    });
    assert_eq!(status["engine"]["backend"], json!("cuda"));
    assert_eq!(status["engine"]["runs"], json!(false));
    let error = classification(&status)["error"].as_str().unwrap();
    assert!(error.contains("CUDA execution provider"), "{error}");
    let metrics = server.get("/metrics").1;
    assert!(
        metrics.contains("visiond_model_ready{model=\"classification\"} 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("visiond_model_provider{"), "{metrics}");
}

#[test]
fn a_change_of_backend_reloads_the_models_while_frames_flow() {
    let server = start("onnxruntime");
    server.wait_for("/api/v1/status", LIMIT, |s| {
        classification(s)["provider"] == "cpu"
    });
    let on_tract = |m: &Json| m["provider"] == "tract";
    let refused = |m: &Json| {
        m["error"]
            .as_str()
            .is_some_and(|e| e.contains("TensorRT execution provider"))
    };
    for (backend, expected) in [
        ("tract", &on_tract as &dyn Fn(&Json) -> bool),
        ("tensorrt", &refused),
    ] {
        assert_eq!(
            server
                .put("/api/v1/config/engine/backend", &format!("{backend:?}"))
                .0,
            200
        );
        let frames = server.get_json("/api/v1/status")["pipeline"]["frames"]
            .as_u64()
            .unwrap();
        let status = server.wait_for("/api/v1/status", LIMIT, |s| {
            s["engine"]["backend"] == backend && expected(classification(s))
        });
        server.wait_for("/api/v1/status", LIMIT, |s| {
            s["pipeline"]["frames"].as_u64() > Some(frames + 3)
        });
        assert_eq!(status["input"]["state"], json!("playing"));
    }
}
