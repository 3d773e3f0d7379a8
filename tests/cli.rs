//! The program as a shell user or systemd runs it: check-config, --help, signals.

mod common;

use common::{expect_event, Server};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn visiond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_visiond"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let output = visiond(&[
        "check-config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/etc/visiond/visiond.toml"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn check_config_prints_path_line_column_for_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    let text = common::SHIPPED_CONFIG
        .replace("fps = 30 ", "fps = 300 ")
        .replace("mode = \"black\"", "mode = \"purple\"");
    std::fs::write(&path, &text).unwrap();
    let output = visiond(&["check-config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line_of = |prefix: &str| text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1;
    let lines: Vec<&str> = stdout.lines().collect();
    let p = path.display();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{p}:{}:7: `input.fps`: 300 is out of range 1..120",
            line_of("fps = 300")
        )),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{p}:{}:8: `background.mode`: expected one of",
            line_of("mode = \"purple\"")
        )),
        "{stdout}"
    );

    std::fs::write(&path, "[input\nfps = 3\n").unwrap();
    let output = visiond(&["check-config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stdout)
        .unwrap()
        .starts_with(&format!("{p}:1:7: ")));
}

#[test]
fn a_broken_file_at_start_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visiond.toml");
    std::fs::write(&path, "[detection]\nenabled = maybe\n").unwrap();
    let output = visiond(&["--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}:2:11:", path.display())),
        "{stderr}"
    );
}

#[test]
fn help_and_version_work_everywhere() {
    for args in [&["--help"][..], &["check-config", "--help"]] {
        let output = visiond(args);
        assert!(output.status.success());
        assert!(String::from_utf8(output.stdout).unwrap().contains("Usage:"));
    }
    let output = visiond(&["--version"]);
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("visiond {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn sighup_reloads_the_file() {
    let server = Server::start();
    let events = server.events();
    std::fs::write(
        &server.config,
        server
            .file()
            .replace("title = \"visiond\"", "title = \"hup\""),
    )
    .unwrap();
    server.signal("HUP");
    expect_event(&events, "change", Duration::from_secs(1), |d| {
        d["key"] == "server.title"
    });
    assert_eq!(server.get_json("/api/v1/config/server/title"), json!("hup"));
    let deadline = Instant::now() + Duration::from_secs(1);
    while !server.log_text().contains("SIGHUP: reloading") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP not logged:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_within_two_seconds_even_with_open_event_streams() {
    let mut server = Server::start();
    let _events = server.events();
    let _more = server.events();
    server.signal("TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(server.log_text().contains("stopped"));
}
