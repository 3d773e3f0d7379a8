//! A small WebDriver client for Debian's chromedriver driving headless Chromium: enough to
//! open the page, press keys on controls and read the DOM, as a user would.

use serde_json::{json, Value as Json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const ARROW_RIGHT: &str = "\u{E014}";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and one headless Chromium session; `extra_args` are Chromium flags.
    pub fn start(extra_args: &[&str]) -> Browser {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: run tools/setup (Debian packages chromium, chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let response: Json = ureq::post(&format!("{base}/session"))
            .send_json(capabilities)
            .expect("start a Chromium session")
            .into_json()
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    fn command(&self, method: &str, path: &str, body: Json) -> Json {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let response = ureq::request(method, &url).send_json(body);
        match response {
            Ok(r) => r.into_json::<Json>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => panic!(
                "WebDriver {path}: {code} {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("WebDriver {path}: {e}"),
        }
    }

    pub fn open(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url}));
    }

    /// Runs `script` in the page and returns its result.
    pub fn eval(&self, script: &str) -> Json {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    pub fn find(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT].as_str().expect("element id").to_owned()
    }

    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{element}/click"), json!({}));
    }

    pub fn send_keys(&self, css: &str, keys: &str) {
        let element = self.find(css);
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": keys}),
        );
    }

    /// Polls `script` until `check` holds for its result, or fails after `limit`.
    pub fn wait_until(&self, script: &str, limit: Duration, check: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(script);
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "`{script}` is still {value} after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
