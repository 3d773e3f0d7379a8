//! A real MQTT broker for the tests (Debian's mosquitto, on loopback, in a folder of its
//! own) and an independent client (mosquitto_sub and mosquitto_pub from mosquitto-clients).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Finds a program that tools/setup installs, or fails saying so: these tests never skip.
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is missing: the MQTT tests need Debian's {package} (tools/setup installs it)");
}

pub struct Broker {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

impl Broker {
    /// A broker on a free loopback port that lets anyone in.
    pub fn start() -> Broker {
        Broker::start_with(|_, _| "allow_anonymous true\n".into())
    }

    /// A broker whose configuration, after its plain listener, is `extra(dir, port)`.
    pub fn start_with(extra: impl FnOnce(&Path, u16) -> String) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let config = dir.path().join("mosquitto.conf");
        // `user root`: as root, mosquitto would otherwise switch to its own user, which
        // cannot read this folder.
        let text = format!(
            "user root\npersistence false\nlog_dest stderr\nlog_type all\nlistener {port} 127.0.0.1\n{}",
            extra(dir.path(), port)
        );
        std::fs::write(&config, text).unwrap();
        let child = Broker::launch(&config, dir.path());
        let broker = Broker {
            child,
            port,
            dir,
            config,
        };
        broker.wait_listening(broker.port);
        broker
    }

    fn launch(config: &Path, dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mosquitto.log"))
            .unwrap();
        Command::new(program("mosquitto", "mosquitto"))
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto")
    }

    /// Waits until `port` (of this broker) takes connections.
    pub fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker (its retained messages go with it: no persistence).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and configuration.
    pub fn restart(&mut self) {
        self.child = Broker::launch(&self.config, self.dir.path());
        self.wait_listening(self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message as mosquitto_sub saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub retained: bool,
    pub payload: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// mosquitto_sub on `filter`, its messages read as they come.
pub struct Subscriber {
    child: Child,
    messages: mpsc::Receiver<Received>,
}

impl Subscriber {
    /// Subscribes to `filter`, and returns once the broker has the subscription: a message
    /// published from then on reaches it.
    pub fn start(broker: &Broker, filter: &str) -> Subscriber {
        static PROBES: AtomicUsize = AtomicUsize::new(0);
        let probe = format!(
            "visiond-test-probe/{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let mut child = Command::new(program("mosquitto_sub", "mosquitto-clients"))
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
            .args(["-t", filter, "-t", &probe, "-F", "%r %t %p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let (tx, messages) = mpsc::channel();
        let (probe_tx, probes) = mpsc::channel();
        let probe_topic = probe.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let mut parts = line.splitn(3, ' ');
                let (Some(flag), Some(topic)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let message = Received {
                    topic: topic.to_owned(),
                    retained: flag == "1",
                    payload: parts.next().unwrap_or("").to_owned(),
                };
                let sent = if message.topic == probe_topic {
                    probe_tx.send(()).is_ok()
                } else {
                    tx.send(message).is_ok()
                };
                if !sent {
                    return;
                }
            }
        });
        // Built first, so that a failure below still ends mosquitto_sub (Drop).
        let subscriber = Subscriber { child, messages };
        // The probe is subscribed after `filter`: once a probe comes back, both are live.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            publish(broker, &probe, "probe");
            if probes.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub {filter} did not subscribe"
            );
        }
        subscriber
    }

    /// The first message that satisfies `check`, or a failure naming `what` after `limit`.
    pub fn expect(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Received) -> bool,
    ) -> Received {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if check(&message) => return message,
                Ok(message) => seen.push(message),
                Err(_) => panic!("no {what} within {limit:?}; saw {seen:#?}"),
            }
        }
    }

    /// Every message that arrives in the next `window`.
    pub fn during(&self, window: Duration) -> Vec<Received> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok(message) = self
            .messages
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(message);
        }
        seen
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto_pub: one message, at least once.
pub fn publish(broker: &Broker, topic: &str, payload: &str) {
    let status = Command::new(program("mosquitto_pub", "mosquitto-clients"))
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .status()
        .expect("run mosquitto_pub");
    assert!(status.success(), "mosquitto_pub {topic} failed");
}

/// The shipped config with `[mqtt]` pointed at `broker` under `topic`, and `keys` set in
/// their sections (values in TOML), comments kept.
pub fn with_mqtt(text: String, url: &str, topic: &str, keys: &[(&str, &str, &str)]) -> String {
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let mut set = |section: &str, key: &str, value: &str| {
        let value: toml_edit::Value = value.parse().unwrap();
        doc[section][key] = toml_edit::value(value);
    };
    set("mqtt", "enabled", "true");
    set("mqtt", "url", &format!("{url:?}"));
    set("mqtt", "topic", &format!("{topic:?}"));
    for (section, key, value) in keys {
        set(section, key, value);
    }
    doc.to_string()
}

/// A mosquitto password file in `dir` with one `user`.
pub fn password_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("passwords");
    let made = Command::new(program("mosquitto_passwd", "mosquitto"))
        .args(["-b", "-c"])
        .arg(&path)
        .args([user, password])
        .status()
        .expect("run mosquitto_passwd");
    assert!(made.success(), "mosquitto_passwd failed");
    path
}

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1, made with openssl
/// in `dir`: `(ca.pem, server.pem, server.key)`.
pub fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let output = Command::new(program("openssl", "openssl"))
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=visiond test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}
