//! Shared by the contract tests: starts the real binary on a config file of its own in a
//! fresh folder, and talks to it over real HTTP.
#![allow(dead_code)] // each test file uses its own subset of these helpers

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod mqtt;
pub mod webdriver;

pub const SHIPPED_CONFIG: &str = include_str!("../../etc/visiond/visiond.toml");
const NOBODY: u32 = 65534;

pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    args: Vec<String>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped config with `listen` moved to a free local port, plus `extra` appended to
/// the sections it names (later keys in TOML may not repeat, so `extra` replaces lines).
pub fn config_text(port: u16) -> String {
    SHIPPED_CONFIG.replace(
        "listen = \"0.0.0.0:8050\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(|text| text, &[])
    }

    /// Starts visiond on the shipped config edited by `edit`, with extra arguments.
    pub fn start_with(edit: impl FnOnce(String) -> String, args: &[&str]) -> Server {
        Server::launch(edit, args, false, None)
    }

    /// Like `start_with`, with at most `descriptors` open files (systemd's LimitNOFILE).
    pub fn start_with_fd_limit(edit: impl FnOnce(String) -> String, descriptors: u64) -> Server {
        Server::launch(edit, &[], false, Some(descriptors))
    }

    /// Like `start_with`, but as an unprivileged user when the tests run as root, so that
    /// file permissions apply to the server.
    pub fn start_unprivileged(edit: impl FnOnce(String) -> String) -> Server {
        Server::launch(edit, &[], true, None)
    }

    fn launch(
        edit: impl FnOnce(String) -> String,
        args: &[&str],
        unprivileged: bool,
        fd_limit: Option<u64>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut port = free_port();
        let config = dir.path().join("visiond.toml");
        let text = edit(config_text(port));
        std::fs::write(&config, &text).unwrap();
        let log = dir.path().join("visiond.log");
        let mut binary = PathBuf::from(env!("CARGO_BIN_EXE_visiond"));
        let unprivileged = unprivileged && is_root();
        if unprivileged {
            // The build's target folder may sit in root's home, out of the user's reach.
            let copy = dir.path().join("bin/visiond");
            std::fs::create_dir(copy.parent().unwrap()).unwrap();
            std::fs::copy(&binary, &copy).unwrap();
            binary = copy;
        }
        // prlimit sets the limit and execs the binary: the child's pid stays visiond's.
        let mut command = match fd_limit {
            Some(n) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(binary);
                prlimit
            }
            None => Command::new(binary),
        };
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if unprivileged {
            chown_recursive(dir.path(), NOBODY);
            command.uid(NOBODY).gid(NOBODY);
        }
        let mut server = Server {
            child: command.spawn().expect("start visiond"),
            dir,
            config,
            port,
            log,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        // The free port may have gone to another test's server in between (one restarted
        // on its port): then this one cannot listen, and starts again on another port.
        for _ in 0..3 {
            if server.wait_ready() {
                return server;
            }
            let new_port = free_port();
            let moved = text.replace(
                &format!("127.0.0.1:{port}"),
                &format!("127.0.0.1:{new_port}"),
            );
            std::fs::write(&server.config, moved).unwrap();
            port = new_port;
            server.port = port;
            command.stderr(std::fs::File::create(&server.log).unwrap());
            server.child = command.spawn().expect("start visiond");
        }
        panic!("visiond found no free port; log:\n{}", server.log_text());
    }

    /// Kills the process with SIGKILL, as a power cut or the OOM killer would, and starts a
    /// new one on the same folder, config file and port.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Command::new(env!("CARGO_BIN_EXE_visiond"))
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .expect("restart visiond");
        assert!(self.wait_ready(), "its port was taken: {}", self.log_text());
    }

    /// Waits until this process serves its port (its own log says so: another test's server
    /// could be listening there); false when it exited because the port was taken.
    fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Listening is enough: with auth_viewers status answers 401, with TLS plain
            // HTTP gets nothing.
            if self.log_text().contains("serving ")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            if !self.is_running() {
                let log = self.log_text();
                assert!(log.contains("cannot listen"), "visiond exited; log:\n{log}");
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("visiond did not come up; log:\n{}", self.log_text());
    }

    /// Sends a request's headers declaring a body of `length` bytes, but not the body, and
    /// returns the response's status code.
    pub fn status_of_declared_body(&self, method: &str, path: &str, length: usize) -> u16 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        let line = String::from_utf8_lossy(&head);
        line["HTTP/1.1 ".len()..].trim().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn file(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        call(ureq::get(&self.url(path)), None)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// PUT a JSON body (as text, so tests can send broken JSON too).
    pub fn put(&self, path: &str, body: &str) -> (u16, String) {
        call(
            ureq::put(&self.url(path)).set("Content-Type", "application/json"),
            Some(body),
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, String) {
        let mut request = ureq::request(method, &self.url(path));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        call(request, body)
    }

    /// Waits until `check` holds for the property's value, or fails after `limit`. A request
    /// that fails on the way (a connection reset on a loaded machine) counts as "not yet";
    /// a server that has exited fails the wait at once, with its log.
    pub fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let last = match ureq::get(&self.url(path)).call() {
                Ok(response) => {
                    let body = response.into_string().unwrap_or_default();
                    let value: serde_json::Value = serde_json::from_str(&body)
                        .unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
                    if check(&value) {
                        return value;
                    }
                    value.to_string()
                }
                Err(ureq::Error::Status(code, response)) => {
                    let body = response.into_string().unwrap_or_default();
                    panic!("GET {path}: {code}: {body}")
                }
                Err(e) => {
                    assert!(
                        self.is_running(),
                        "visiond exited; its log:\n{}",
                        self.log_text()
                    );
                    format!("unanswered ({e})")
                }
            };
            assert!(
                Instant::now() < deadline,
                "{path} is still {last} after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process still runs (not exited and waiting to be reaped).
    fn is_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Opens `/api/v1/events` and returns its `(event, data)` pairs as they arrive.
    pub fn events(&self) -> mpsc::Receiver<(String, serde_json::Value)> {
        let response = ureq::get(&self.url("/api/v1/events"))
            .call()
            .expect("open event stream");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut event = String::new();
            for line in BufReader::new(response.into_reader()).lines() {
                let Ok(line) = line else { return };
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(data) = line.strip_prefix("data:") {
                    let data = serde_json::from_str(data.trim()).unwrap_or(serde_json::Value::Null);
                    if tx.send((event.clone(), data)).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the first event named `name` whose data satisfies `check`.
pub fn expect_event(
    events: &mpsc::Receiver<(String, serde_json::Value)>,
    name: &str,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok((event, data)) if event == name && check(&data) => return data,
            Ok(_) => continue,
            Err(_) => panic!("no `{name}` event within {limit:?}"),
        }
    }
}

fn call(request: ureq::Request, body: Option<&str>) -> (u16, String) {
    let result = match body {
        Some(body) => request.send_string(body),
        None => request.call(),
    };
    match result {
        Ok(response) => (
            response.status(),
            response.into_string().unwrap_or_default(),
        ),
        Err(ureq::Error::Status(code, response)) => {
            (code, response.into_string().unwrap_or_default())
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

/// Saves like vim or `sed -i`: a new file renamed over the old one.
pub fn save_by_rename(path: &Path, text: &str) {
    let temp = path.with_extension("toml.swp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn chown_recursive(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// This machine's own IPv4 address (not loopback), from the kernel's table of local
/// addresses: ICE candidates on 127.0.0.1 would hide what a second machine would see.
pub fn machine_address() -> String {
    let table = std::fs::read_to_string("/proc/net/fib_trie").expect("read /proc/net/fib_trie");
    let mut previous = "";
    for line in table.lines() {
        if line.trim() == "/32 host LOCAL" && !previous.starts_with("127.") {
            return previous.to_owned();
        }
        previous = line.trim().trim_start_matches("|-- ");
    }
    panic!("this machine has no IPv4 address but loopback");
}

/// The config edited so that ICE offers only this machine's own address.
pub fn ice_on_machine_address(text: String) -> String {
    text.replace(
        "ice_hosts = []",
        &format!("ice_hosts = [\"{}\"]", machine_address()),
    )
}

/// `[input] uri` set to `uri`.
pub fn with_input(text: String, uri: &str) -> String {
    text.replace("uri = \"webrtc\"", &format!("uri = \"{uri}\""))
}

/// A process's threads, open file descriptors and resident memory (KiB), from /proc.
pub fn process_usage(pid: u32) -> (usize, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (field("Threads:") as usize, fds, field("VmRSS:"))
}

/// `[input]` at 320x240, 15 frames a second: enough for video tests on a small machine.
pub fn small_input(text: String) -> String {
    text.replace("width = 1280 ", "width = 320  ")
        .replace("height = 720 ", "height = 240 ")
        .replace("fps = 30 ", "fps = 15 ")
}

/// Runs the independent WebRTC client (tests/webrtc_client.py on aiortc, from the venv that
/// tools/setup makes) against `server`; returns the JSON it prints.
pub fn aiortc(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut command = Command::new(vendored("vendor/aiortc/bin/python"));
    command
        .arg(vendored("tests/webrtc_client.py"))
        .arg(server.url(""))
        .args(args);
    client_report(server, &mut command, &format!("aiortc client {args:?}"))
}

/// A file of the checkout that tools/setup puts there (or the repository has).
pub fn vendored(path: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    assert!(
        path.exists(),
        "{} is missing: run tools/setup",
        path.display()
    );
    path
}

/// Runs an independent WebRTC client against `server` and returns the JSON report it
/// prints; its failure shows its errors and visiond's log.
pub fn client_report(server: &Server, command: &mut Command, what: &str) -> serde_json::Value {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed:\n{}\nvisiond log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}
