//! The page, the API's description and the metrics, as a browser or a scraper fetches them.

mod common;

use common::Server;
use serde_json::json;

const MODELS: [&str; 6] = [
    "classification",
    "detection",
    "segmentation",
    "pose",
    "action",
    "background",
];

#[test]
fn the_page_has_a_card_per_model_with_every_control_bound() {
    let server = Server::start();
    let (status, html) = server.get("/");
    assert_eq!(status, 200);
    for model in MODELS {
        assert!(
            html.contains(&format!("data-section=\"{model}\"")),
            "{model} card"
        );
        assert!(
            html.contains(&format!("data-key=\"{model}.enabled\"")),
            "{model} switch"
        );
        assert!(
            html.contains(&format!("data-state-for=\"{model}\"")),
            "{model} state"
        );
    }
    // One partial each: slider, select, checkbox (flags), text.
    assert!(
        html.contains(
            r#"type="range" data-key="detection.confidence_threshold" min="0.0" max="1.0""#
        ),
        "slider"
    );
    assert!(
        html.contains(r#"<select data-key="background.mode">"#),
        "select"
    );
    assert!(
        html.contains(r#"data-key="detection.overlay" data-flag="box" checked"#),
        "flag checkbox"
    );
    assert!(
        html.contains(r##"type="color" data-key="background.color" value="#00b140""##),
        "colour"
    );
    assert!(html.contains("<video id=\"video\""), "room for the video");
    assert!(
        html.contains("id=\"config-error\" role=\"alert\" hidden"),
        "no error banner on a good file"
    );
}

#[test]
fn the_page_shows_the_current_values_and_a_broken_file() {
    let server = Server::start();
    server.put("/api/v1/config/detection/confidence_threshold", "0.35");
    server.put("/api/v1/config/server/title", "\"Lab camera\"");
    std::fs::write(
        &server.config,
        server.file().replace("[pose]\n", "[pose]\nwings = 2\n"),
    )
    .unwrap();
    server.wait_for("/api/v1/status", std::time::Duration::from_secs(1), |s| {
        s["config"]["error"].is_string()
    });
    let (_, html) = server.get("/");
    assert!(html.contains("<title>Lab camera</title>"));
    assert!(html.contains(
        r#"data-key="detection.confidence_threshold" min="0.0" max="1.0" step="0.01" value="0.35""#
    ));
    assert!(!html.contains("id=\"config-error\" role=\"alert\" hidden"));
    assert!(
        html.contains("unknown key") && html.contains("pose.wings"),
        "the banner names the problem"
    );
}

#[test]
fn nothing_on_the_page_comes_from_elsewhere() {
    let server = Server::start();
    let (_, html) = server.get("/");
    let mut texts = vec![html.clone()];
    for asset in ["/static/app.js", "/static/style.css"] {
        assert!(html.contains(asset), "{asset} is linked");
        let (status, body) = server.get(asset);
        assert_eq!(status, 200, "{asset}");
        texts.push(body);
    }
    for text in &texts {
        for external in [
            "http://",
            "https://",
            "src=\"//",
            "href=\"//",
            "url(//",
            "@import",
        ] {
            assert!(!text.contains(external), "found {external}");
        }
    }
    assert_eq!(server.get("/static/missing.js").0, 404);
}

#[test]
fn openapi_describes_every_route_and_setting() {
    let server = Server::start();
    let doc = server.get_json("/api/v1/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/config",
        "/api/v1/config/{section}/{key}",
        "/{section}/{key}",
        "/api/v1/status",
        "/api/v1/results",
        "/api/v1/models",
        "/api/v1/events",
        "/api/v1/openapi.json",
        "/metrics",
        "/",
        "/whep",
        "/whep/{id}",
        "/whip",
        "/whip/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is described");
    }
    let config = &doc["components"]["schemas"]["Config"]["properties"];
    let tree = server.get_json("/api/v1/config");
    for (section, keys) in tree.as_object().unwrap() {
        for key in keys.as_object().unwrap().keys() {
            assert!(
                config[section]["properties"].get(key).is_some(),
                "{section}.{key} is described"
            );
        }
    }
    let threshold = &config["detection"]["properties"]["confidence_threshold"];
    assert_eq!(
        (threshold["minimum"].clone(), threshold["maximum"].clone()),
        (json!(0.0), json!(1.0))
    );
    assert_eq!(
        config["input"]["properties"]["flip"]["enum"],
        json!(["none", "horizontal", "vertical", "rotate-180"])
    );
    let put = &doc["paths"]["/api/v1/config/{section}/{key}"]["put"]["responses"];
    for code in ["200", "400", "401", "404", "409", "413", "415", "503"] {
        assert!(put.get(code).is_some(), "PUT documents {code}");
    }
}

#[test]
fn status_and_metrics_report_config_models_and_pipeline() {
    let server = Server::start();
    let status = server.get_json("/api/v1/status");
    assert_eq!(
        status["config"]["path"],
        json!(server.config.display().to_string())
    );
    assert!(status["config"]["loaded_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    for model in MODELS {
        assert_eq!(
            status["models"][model]["state"],
            json!("disabled"),
            "{model}"
        );
    }
    assert!(status["pipeline"]["fps"].is_number());
    assert_eq!(status["input"]["uri"], json!("webrtc"));
    let (code, metrics) = server.get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("# TYPE visiond_frames_total counter"));
    assert!(metrics.contains("visiond_config_error 0"));
    assert!(metrics.contains("visiond_model_ready{model=\"detection\"} 0"));
    std::fs::write(&server.config, "[input]\nfps = 0\n").unwrap();
    server.wait_for("/api/v1/status", std::time::Duration::from_secs(1), |s| {
        s["config"]["error"].is_string()
    });
    assert!(server.get("/metrics").1.contains("visiond_config_error 1"));
}
