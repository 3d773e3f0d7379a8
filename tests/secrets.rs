//! A camera's password and the API token never leave visiond: not in the REST tree, a
//! property, an event, an error, the status, the page, the metrics or the log, whatever the
//! password holds (`/`, `@`) and however the value got in (REST, the file, a typo).

mod common;

use common::{expect_event, Server};
use serde_json::json;
use std::time::{Duration, Instant};

const PASSWORD: &str = "pa/ss@w0rd";
const TOKEN: &str = "t0ken-s3cret";
const LIMIT: Duration = Duration::from_secs(10);

/// Every place that shows settings, as text.
fn everything_shown(server: &Server) -> Vec<(&'static str, String)> {
    let auth = format!("Bearer {TOKEN}");
    let get = |path| {
        server
            .request("GET", path, &[("Authorization", &auth)], None)
            .1
    };
    vec![
        ("config", get("/api/v1/config")),
        ("property", get("/api/v1/config/input/uri")),
        ("token property", get("/api/v1/config/server/auth_token")),
        ("status", get("/api/v1/status")),
        ("page", get("/")),
        ("metrics", get("/metrics")),
        ("log", server.log_text()),
    ]
}

fn assert_nothing_leaks(server: &Server, extra: &[(&str, String)]) {
    for (place, text) in everything_shown(server).iter().chain(extra) {
        for secret in [PASSWORD, "pa/ss", TOKEN] {
            assert!(!text.contains(secret), "{place} shows {secret}: {text}");
        }
    }
}

#[test]
fn a_camera_password_and_the_token_are_masked_everywhere() {
    let server = Server::start_with(
        |t| t.replace("auth_token = \"\"", &format!("auth_token = \"{TOKEN}\"")),
        &[],
    );
    let events = server.events();
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let uri = format!("rtsp://alice:{PASSWORD}@127.0.0.1:9/cam");
    let (code, answer) = server.request(
        "PUT",
        "/api/v1/config/input/uri",
        &headers,
        Some(&json!(uri).to_string()),
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer,
        json!("rtsp://alice:***@127.0.0.1:9/cam").to_string()
    );
    let change = expect_event(&events, "change", LIMIT, |e| e["key"] == "input.uri");
    assert_eq!(change["value"], json!("rtsp://alice:***@127.0.0.1:9/cam"));
    assert!(
        server.file().contains(PASSWORD),
        "the file keeps the real one"
    );
    let config = server.get_json("/api/v1/config");
    assert_eq!(config["server"]["auth_token"], json!("***"));

    // Sending back what was shown keeps the secrets.
    let (code, body) = server.request(
        "PATCH",
        "/api/v1/config",
        &headers,
        Some(&json!({"input": config["input"], "server": {"auth_token": "***"}}).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    assert!(server.file().contains(&uri));
    assert!(server.file().contains(TOKEN));

    // A typo'd scheme is refused without echoing the password, over REST and in the file.
    let typo = format!("rtps://alice:{PASSWORD}@cam/live");
    let (code, refused) = server.request(
        "PUT",
        "/api/v1/config/input/uri",
        &headers,
        Some(&json!(typo).to_string()),
    );
    assert_eq!(code, 400, "{refused}");
    let good = server.file();
    std::fs::write(&server.config, good.replace(&uri, &typo)).unwrap();
    let error = expect_event(&events, "config_error", LIMIT, |_| true);
    assert!(
        error.to_string().contains("rtps://alice:***@cam/live"),
        "{error}"
    );
    let deadline = Instant::now() + LIMIT;
    while server.get_json("/api/v1/status")["config"]["error"].is_null() {
        assert!(Instant::now() < deadline, "the typo is not reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen: Vec<(&str, String)> = vec![
        ("the answer", answer),
        ("a change event", change.to_string()),
        ("the patch answer", body),
        ("a refusal", refused),
        ("an error event", error.to_string()),
    ];
    assert_nothing_leaks(&server, &seen);
}
