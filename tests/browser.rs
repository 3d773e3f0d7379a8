//! The page in a real headless Chromium: its controls write the file, and the file, REST and
//! other browsers move its controls, without reloading the page.

mod common;

use common::webdriver::{Browser, ARROW_RIGHT};
use common::Server;
use serde_json::json;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);
const SLIDER: &str = r#"input[data-key="detection.confidence_threshold"]"#;

fn slider_value(browser: &Browser) -> f64 {
    let script = format!("return Number(document.querySelector('{SLIDER}').value)");
    browser.eval(&script).as_f64().unwrap()
}

#[test]
fn moving_a_slider_writes_the_file() {
    let server = Server::start();
    let browser = Browser::start(&[]);
    browser.open(&server.url("/"));
    browser.wait_until("return document.readyState", SECOND, |s| s == "complete");
    browser.click(SLIDER);
    browser.send_keys(SLIDER, &ARROW_RIGHT.repeat(3));
    let on_page = slider_value(&browser);
    let wanted = json!(on_page);
    server.wait_for(
        "/api/v1/config/detection/confidence_threshold",
        SECOND,
        |v| v == &wanted,
    );
    // Written in place, the line's comment kept.
    let file = server.file();
    let line = file
        .lines()
        .find(|l| l.starts_with(&format!("confidence_threshold = {on_page} ")))
        .unwrap_or_else(|| panic!("no {on_page} in {file}"));
    assert!(
        line.ends_with("# minimum confidence of a box (0..1)"),
        "{line}"
    );
    assert_ne!(on_page, 0.35, "the slider moved");

    browser.click(r#"input[data-key="pose.enabled"]"#);
    server.wait_for("/api/v1/config/pose/enabled", SECOND, |v| v == &json!(true));
    assert!(server.file().contains("[pose]\nenabled = true"));
}

#[test]
fn a_file_edit_moves_the_controls_on_the_open_page() {
    let server = Server::start();
    let browser = Browser::start(&[]);
    browser.open(&server.url("/"));
    browser.wait_until("return document.readyState", SECOND, |s| s == "complete");
    let text = server
        .file()
        .replace(
            "confidence_threshold = 0.35  # minimum confidence of a box",
            "confidence_threshold = 0.8   # minimum confidence of a box",
        )
        .replace("[pose]\nenabled = false", "[pose]\nenabled = true");
    common::save_by_rename(&server.config, &text);
    let script = format!("return Number(document.querySelector('{SLIDER}').value)");
    browser.wait_until(&script, SECOND, |v| v == &json!(0.8));
    browser.wait_until(
        r#"return document.querySelector('input[data-key="pose.enabled"]').checked"#,
        SECOND,
        |v| v == &json!(true),
    );

    // A broken file shows the banner; fixing it takes the banner away.
    std::fs::write(
        &server.config,
        text.replace("[pose]\n", "[pose]\nwings = 2\n"),
    )
    .unwrap();
    let banner =
        "const b = document.getElementById('config-error'); return b.hidden ? '' : b.textContent";
    let shown = browser.wait_until(banner, SECOND, |v| {
        v.as_str().is_some_and(|s| s.contains("pose.wings"))
    });
    assert!(shown
        .as_str()
        .unwrap()
        .contains(&format!("{}:", server.config.display())));
    std::fs::write(&server.config, &text).unwrap();
    browser.wait_until(banner, SECOND, |v| v == "");
}

#[test]
fn two_browsers_stay_in_step() {
    let server = Server::start();
    let first = Browser::start(&[]);
    let second = Browser::start(&[]);
    for browser in [&first, &second] {
        browser.open(&server.url("/"));
        browser.wait_until("return document.readyState", SECOND, |s| s == "complete");
    }
    // Choose "blur" in the first browser's select with the keyboard, as a user would.
    let select = r#"select[data-key="background.mode"]"#;
    first.click(select);
    first.send_keys(select, "blur");
    first.eval(&format!("document.querySelector('{select}').blur()"));
    server.wait_for("/api/v1/config/background/mode", SECOND, |v| v == "blur");
    second.wait_until(
        &format!("return document.querySelector('{select}').value"),
        SECOND,
        |v| v == "blur",
    );
    assert!(server.file().contains("mode = \"blur\""));
}

#[test]
fn with_auth_viewers_the_page_opens_once_the_token_is_typed() {
    let server = Server::start_with(
        |t| {
            t.replace("auth_token = \"\"", "auth_token = \"s3cret\"")
                .replace("auth_viewers = false", "auth_viewers = true")
        },
        &[],
    );
    let browser = Browser::start(&[]);
    browser.open(&server.url("/"));
    browser.wait_until("return document.readyState", SECOND, |s| s == "complete");
    let controls = format!("return document.querySelectorAll('{SLIDER}').length");
    assert_eq!(
        browser.eval(&controls),
        json!(0),
        "the prompt shows no settings"
    );
    browser.send_keys("#token", "s3cret\n");
    browser.wait_until(&controls, 5 * SECOND, |n| n == &json!(1));
    // The page's own script has the token: its event stream moves the controls...
    let text = server.file().replace(
        "confidence_threshold = 0.35  # minimum confidence of a box",
        "confidence_threshold = 0.8   # minimum confidence of a box",
    );
    common::save_by_rename(&server.config, &text);
    let slider = format!("return Number(document.querySelector('{SLIDER}').value)");
    browser.wait_until(&slider, 5 * SECOND, |v| v == &json!(0.8));
    // ...and its writes are accepted.
    browser.click(r#"input[data-key="pose.enabled"]"#);
    let deadline = std::time::Instant::now() + 5 * SECOND;
    while !server.file().contains("[pose]\nenabled = true") {
        assert!(
            std::time::Instant::now() < deadline,
            "the page's write did not land"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
