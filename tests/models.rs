//! The models on real pictures through `visiond infer`, and the live pipeline on the shipped
//! sample pictures: results where the things are, switches and failures that stop nothing.

mod common;

use common::Server;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> Json {
    serde_json::from_str(&std::fs::read_to_string(data("model-reference.json")).unwrap()).unwrap()
}

/// The shipped config file: what a user runs with before changing anything.
fn shipped() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/etc/visiond/visiond.toml"
    ))
    .unwrap()
}

/// `visiond infer ... --json` on one picture, with `config` as the config file's text.
fn infer(config: &str, args: &[&str], picture: &str) -> Json {
    infer_into(tempfile::tempdir().unwrap().path(), config, args, picture)
}

/// `infer`, writing the config file and the annotated picture into `out`.
fn infer_into(out: &Path, config: &str, args: &[&str], picture: &str) -> Json {
    let config_path = out.join("visiond.toml");
    std::fs::write(&config_path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_visiond"))
        .arg("--config")
        .arg(&config_path)
        .args(["infer", "--json", "--out"])
        .arg(out)
        .args(args)
        .arg(data(picture))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.join(picture).is_file(),
        "the annotated picture is written"
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn iou(a: &[f64], b: &[f64]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: &[f64]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

fn numbers(value: &Json) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn the_eagle_is_an_eagle() {
    // Its best class scores 0.31; the default threshold (0.01, imageNet's) shows it.
    let result = infer(
        &shipped(),
        &["--classification", "efficientnet-lite0"],
        "eagle.jpg",
    );
    let label = result["classification"]["label"].as_str().unwrap();
    assert!(
        label == "bald eagle" || label.starts_with("kite"),
        "{label}"
    );
    let expected = reference()["classification"]["eagle"][0][2]
        .as_f64()
        .unwrap();
    let confidence = result["classification"]["confidence"].as_f64().unwrap();
    assert!(
        (confidence - expected).abs() < 0.05,
        "{confidence} vs {expected}"
    );
}

#[test]
fn the_dog_picture_has_a_dog_a_bicycle_and_a_vehicle_where_they_are() {
    // With the shipped defaults (stretched input, threshold 0.35 as NanoDet's demo).
    let result = infer(&shipped(), &["--detection", "nanodet"], "dog.jpg");
    let boxes = result["detection"].as_array().unwrap();
    for wanted in ["dog", "bicycle", "car|truck"] {
        let expected = reference()["detection"]["dog"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| wanted.split('|').any(|w| d[0] == w))
            .map(|d| numbers(&d[2]))
            .unwrap();
        let found = boxes
            .iter()
            .filter(|b| wanted.split('|').any(|w| b["label"] == w))
            .map(|b| iou(&numbers(&b["box"]), &expected))
            .fold(0.0, f64::max);
        assert!(found > 0.7, "{wanted}: best IoU {found} in {boxes:?}");
    }
}

/// The person in person.jpg, as NanoDet finds it: [x0, y0, x1, y1].
fn person_box() -> Vec<f64> {
    let person = reference()["detection"]["person"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d[0] == "person")
        .map(|d| numbers(&d[2]))
        .unwrap();
    person
}

#[test]
fn the_person_has_seventeen_keypoints_on_them() {
    let result = infer(&shipped(), &["--pose", "movenet-lightning"], "person.jpg");
    let keypoints = result["pose"][0]["keypoints"].as_array().unwrap();
    assert_eq!(keypoints.len(), 17, "{keypoints:?}");
    // On the person: inside their box with a tenth of its size to spare (the box is tight).
    let b = person_box();
    let (dx, dy) = ((b[2] - b[0]) / 10.0, (b[3] - b[1]) / 10.0);
    for k in keypoints {
        let (x, y) = (k["x"].as_f64().unwrap(), k["y"].as_f64().unwrap());
        assert!(
            (b[0] - dx..=b[2] + dx).contains(&x) && (b[1] - dy..=b[3] + dy).contains(&y),
            "{k} is off the person {b:?}"
        );
    }
    let names: Vec<&str> = keypoints
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"nose") && names.contains(&"right_ankle"),
        "{names:?}"
    );
}

#[test]
fn the_person_mask_is_the_share_the_person_takes() {
    let result = infer("", &["--segmentation", "selfie-segmentation"], "person.jpg");
    let share = result["segmentation"]["classes"]["person"]
        .as_f64()
        .unwrap();
    let expected = reference()["segmentation"]["person"]["person_fraction"]
        .as_f64()
        .unwrap();
    assert!((share - expected).abs() < 0.01, "{share} vs {expected}");
}

#[test]
fn the_dog_picture_is_segmented_into_its_pascal_voc_classes_and_coloured() {
    let out = tempfile::tempdir().unwrap();
    let result = infer_into(
        out.path(),
        &shipped(),
        &["--segmentation", "deeplabv3-mnv2-pascal"],
        "dog.jpg",
    );
    let classes = &result["segmentation"]["classes"];
    let reference = reference();
    for found in reference["segmentation-voc"]["dog"].as_array().unwrap() {
        let (label, want) = (found[0].as_str().unwrap(), found[1].as_f64().unwrap());
        let got = classes[label].as_f64().unwrap_or(0.0);
        assert!(
            (got - want).abs() < 0.005,
            "{label}: {got} vs {want} in {classes}"
        );
    }
    // The picture is tinted in the dog's colour (#400080: more blue than red or green)
    // where the dog is, and left as it was at the top left (background).
    let original = image::open(data("dog.jpg")).unwrap().to_rgb8();
    let drawn = image::open(out.path().join("dog.jpg")).unwrap().to_rgb8();
    let (before, after) = (original.get_pixel(220, 420), drawn.get_pixel(220, 420));
    assert!(
        i32::from(after[2]) - i32::from(before[2]) > 20 && after[1] < before[1],
        "{before:?} -> {after:?}"
    );
    let (before, after) = (original.get_pixel(20, 20), drawn.get_pixel(20, 20));
    assert!(
        before
            .0
            .iter()
            .zip(after.0)
            .all(|(b, a)| b.abs_diff(a) <= 8),
        "{before:?} -> {after:?}"
    );
}

#[test]
fn a_still_clip_of_horses_is_an_action_with_horses() {
    let result = infer("", &["--action", "i3d-kinetics-400"], "horses.jpg");
    let label = result["action"]["label"].as_str().unwrap();
    let reference = reference();
    let top3: Vec<&str> = reference["action"]["horses_x16"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|a| a[0].as_str().unwrap())
        .collect();
    assert!(top3.contains(&label), "{label} not in {top3:?}");
}

#[test]
fn the_catalog_lists_every_shipped_model_as_present() {
    let output = Command::new(env!("CARGO_BIN_EXE_visiond"))
        .arg("models")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for name in [
        "efficientnet-lite0",
        "nanodet",
        "movenet-lightning",
        "selfie-segmentation",
        "deeplabv3-mnv2-pascal",
        "i3d-kinetics-400",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(line.ends_with("yes"), "{line}");
    }
}

fn frames(server: &Server) -> u64 {
    server.get_json("/api/v1/status")["pipeline"]["frames"]
        .as_u64()
        .unwrap()
}

/// Waits until the status satisfies `check`, or fails after `limit`.
fn wait_status(server: &Server, limit: Duration, check: impl Fn(&Json) -> bool) -> Json {
    server.wait_for("/api/v1/status", limit, check)
}

#[test]
fn the_pipeline_runs_the_models_on_the_sample_pictures() {
    let pictures = data("");
    let server = Server::start_with(
        |t| t.replace("fps = 30 ", "fps = 5 "),
        &[
            "--input",
            &format!("images:{pictures}"),
            "--detection",
            "nanodet",
            "--classification",
            "efficientnet-lite0",
        ],
    );
    let status = wait_status(&server, Duration::from_secs(60), |s| {
        s["models"]["detection"]["state"] == "ready"
            && s["models"]["classification"]["state"] == "ready"
            && s["pipeline"]["frames"].as_u64() > Some(3)
    });
    assert_eq!(status["input"]["state"], json!("playing"));
    assert!(
        status["models"]["classification"]["avg_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let results = server.get_json("/api/v1/results");
    assert!(results["frame"].as_u64().unwrap() > 0);
    assert_eq!(
        (results["width"].clone(), results["height"].clone()),
        (json!(1280), json!(720))
    );
    assert!(
        results["detection"].is_array() && results.get("classification").is_some(),
        "{results}"
    );
    let (code, _) = server.get("/api/v1/snapshot.jpg");
    assert_eq!(code, 200);
    let metrics = server.get("/metrics").1;
    assert!(
        metrics.contains("visiond_model_ready{model=\"classification\"} 1"),
        "{metrics}"
    );
}

/// `reference()`'s box for `label` in `picture` (pixels of the picture), moved to where the
/// images source puts the picture in a `width` x `height` frame: scaled to fit, centred.
fn fitted_reference_box(picture: &str, label: &str, (width, height): (f64, f64)) -> Vec<f64> {
    let name = picture.trim_end_matches(".jpg");
    let reference = reference()["detection"][name]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d[0] == label)
        .map(|d| numbers(&d[2]))
        .unwrap_or_else(|| panic!("no {label} in the reference for {picture}"));
    let size = image::image_dimensions(data(picture)).unwrap();
    let (w, h) = (size.0 as f64, size.1 as f64);
    let scale = (width / w).min(height / h);
    let (x0, y0) = (
        ((width - (w * scale).round()) / 2.0).floor(),
        ((height - (h * scale).round()) / 2.0).floor(),
    );
    vec![
        x0 + reference[0] * scale,
        y0 + reference[1] * scale,
        x0 + reference[2] * scale,
        y0 + reference[3] * scale,
    ]
}

#[test]
fn the_appliance_boxes_what_each_sample_picture_shows_at_the_shipped_threshold() {
    // What a user of the README's first command sees: each picture fitted into the shipped
    // 1280x720 frame, detection at the shipped threshold.
    for (picture, label) in [
        ("person.jpg", "person"),
        ("eagle.jpg", "bird"),
        ("dog.jpg", "dog"),
    ] {
        let server = Server::start_with(
            |t| t.replace("fps = 30 ", "fps = 5 "),
            &[
                "--input",
                &format!("images:{}", data(picture)),
                "--detection",
                "nanodet",
            ],
        );
        let results = server.wait_for("/api/v1/results", Duration::from_secs(90), |r| {
            r["detection"].is_array()
        });
        let expected = fitted_reference_box(picture, label, (1280.0, 720.0));
        let best = results["detection"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["label"] == label)
            .map(|d| iou(&numbers(&d["box"]), &expected))
            .fold(0.0, f64::max);
        assert!(
            best > 0.7,
            "{picture}: {label} best IoU {best} in {results}"
        );
    }
}

#[test]
fn a_missing_or_broken_model_errs_alone_and_a_switch_keeps_frames_flowing() {
    let server = Server::start_with(
        |t| t,
        &["--input", "test", "--classification", "efficientnet-lite0"],
    );
    wait_status(&server, Duration::from_secs(60), |s| {
        s["models"]["classification"]["state"] == "ready"
    });
    let broken = server.dir.path().join("broken.onnx");
    std::fs::write(&broken, b"this is not an ONNX file").unwrap();
    let mut stalls = 0;
    for (network, state) in [
        (broken.display().to_string(), "error"),
        ("/nonexistent/model.onnx".to_owned(), "error"),
        ("efficientnet-lite0".to_owned(), "ready"),
    ] {
        assert_eq!(
            server
                .put(
                    "/api/v1/config/classification/network",
                    &format!("{network:?}")
                )
                .0,
            200
        );
        let start = Instant::now();
        let mut seen = frames(&server);
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let status = server.get_json("/api/v1/status");
            let now = status["pipeline"]["frames"].as_u64().unwrap();
            stalls += (now == seen) as u32;
            seen = now;
            let model = &status["models"]["classification"];
            if model["network"] == network.as_str() && model["state"] == state {
                if state == "error" {
                    assert!(
                        model["error"].as_str().unwrap().contains(&network),
                        "{model}"
                    );
                }
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{network}: {model}"
            );
        }
    }
    assert!(
        stalls <= 2,
        "frames stalled {stalls} times during the switches"
    );
    assert_eq!(
        server.get_json("/api/v1/status")["input"]["state"],
        json!("playing")
    );
}
