//! MQTT against a real broker (mosquitto on loopback) with an independent client
//! (mosquitto_sub, mosquitto_pub): status with its last will, results, events, discovery,
//! control through the settings store, a broker that goes away, a refused login, TLS.

mod common;

use common::mqtt::{
    password_file, publish, test_certificates, with_mqtt, Broker, Received, Subscriber,
};
use common::{expect_event, Server};
use serde_json::{json, Value as Json};
use std::time::Duration;

const TOPIC: &str = "test/cam";
/// Generous: this runs on a loaded 2-core machine beside model inference. Deadlines only
/// slow a failing test.
const CONNECT: Duration = Duration::from_secs(60);
const MESSAGE: Duration = Duration::from_secs(60);

fn broker_url(broker: &Broker) -> String {
    format!("mqtt://127.0.0.1:{}", broker.port)
}

/// The test pattern, small, at 10 FPS.
fn test_input(text: String) -> String {
    common::small_input(common::with_input(text, "test")).replace("fps = 15 ", "fps = 10 ")
}

/// visiond on the test pattern publishing to `url` under `TOPIC`, with `keys` set.
fn start_on(url: &str, keys: &[(&str, &str, &str)]) -> Server {
    Server::start_with(|text| with_mqtt(test_input(text), url, TOPIC, keys), &[])
}

/// visiond connected to `broker`.
fn start(broker: &Broker, keys: &[(&str, &str, &str)]) -> Server {
    let server = start_on(&broker_url(broker), keys);
    wait_mqtt(&server, "connected");
    server
}

fn wait_mqtt(server: &Server, state: &str) -> Json {
    server.wait_for("/api/v1/status", CONNECT, |s| s["mqtt"]["state"] == state)
}

fn topic(name: &str) -> String {
    format!("{TOPIC}/{name}")
}

#[test]
fn status_is_retained_with_discovery_and_the_last_will_says_offline_on_kill_9() {
    let broker = Broker::start();
    let everything = Subscriber::start(&broker, "#");
    let mut server = start(&broker, &[]);
    let status = server.get_json("/api/v1/status")["mqtt"].clone();
    assert_eq!(status["broker"], json!(broker_url(&broker)));
    assert_eq!(status["topic"], json!(TOPIC));
    assert_eq!(status["error"], Json::Null);
    let fps_sensor = "homeassistant/sensor/test_cam/fps/config";
    // Home Assistant finds the device's FPS sensor, available while the status says online.
    let fps = everything.expect("the FPS sensor's discovery", MESSAGE, |m| {
        m.topic == fps_sensor
    });
    let fps = fps.json();
    assert_eq!(fps["state_topic"], json!(topic("status")));
    assert_eq!(fps["availability_topic"], json!(topic("status")));
    // The status is refreshed: once the input plays, it says so.
    everything.expect("a status with the input", MESSAGE, |m| {
        m.topic == topic("status") && m.json()["input"]["state"] == "playing"
    });

    // Clients that come later get what the broker kept.
    let late = Subscriber::start(&broker, &topic("status"));
    let online = late.expect("a retained online status", MESSAGE, |m| m.retained);
    let online = online.json();
    assert_eq!(online["state"], json!("online"));
    assert_eq!(online["input"]["uri"], json!("test"));
    assert!(
        online["fps"].is_number() && online["models"]["detection"].is_object(),
        "{online}"
    );
    let late_discovery = Subscriber::start(&broker, fps_sensor);
    late_discovery.expect("the retained discovery", MESSAGE, |m| m.retained);

    // kill -9: no goodbye, the broker's last will speaks.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    late.expect("the last will", MESSAGE, |m| m.json()["state"] == "offline");
    let later = Subscriber::start(&broker, &topic("status"));
    let kept = later.expect("the retained last will", MESSAGE, |m| m.retained);
    assert_eq!(kept.json(), json!({"state": "offline"}));

    // Back up, online again; a clean stop (SIGTERM) says offline itself.
    server.kill_and_restart();
    wait_mqtt(&server, "connected");
    late.expect("online again", MESSAGE, |m| m.json()["state"] == "online");
    server.signal("TERM");
    late.expect("offline on a clean stop", MESSAGE, |m| {
        m.json()["state"] == "offline"
    });
}

#[test]
fn results_come_at_the_set_rate_and_zero_sends_events_only() {
    let broker = Broker::start();
    // One subscriber for all of visiond's topics: one ordered stream per connection.
    let everything = Subscriber::start(&broker, &format!("{TOPIC}/#"));
    let server = start(&broker, &[("mqtt", "results_hz", "5.0")]);
    let is_result = |m: &Received| m.topic == topic("results");
    let results_in = |window: Duration| {
        everything
            .during(window)
            .iter()
            .filter(|m| is_result(m))
            .count()
    };
    let first = everything.expect("results", MESSAGE, is_result).json();
    assert!(
        first["frame"].is_u64() && first["width"] == json!(320),
        "{first}"
    );
    // 20 at 5 per second over 4 s; a loaded machine may be a little late.
    let count = results_in(Duration::from_secs(4));
    assert!((12..=23).contains(&count), "{count} results in 4 s at 5 Hz");

    for (rate, expected) in [("1", 2..=6), ("0", 0..=0)] {
        let (code, body) = server.put("/api/v1/config/mqtt/results_hz", rate);
        assert_eq!(code, 200, "{body}");
        // The change reconnects: the old connection's results come before its goodbye.
        everything.expect("the old connection's goodbye", MESSAGE, |m| {
            m.topic == topic("status") && m.json()["state"] == "offline"
        });
        everything.expect("the new connection", MESSAGE, |m| {
            m.topic == topic("status") && m.json()["state"] == "online"
        });
        let count = results_in(Duration::from_secs(4));
        assert!(
            expected.contains(&count),
            "{count} results in 4 s at {rate} Hz"
        );
    }
}

#[test]
fn detections_enter_and_leave_and_labels_change_on_the_sample_pictures() {
    let broker = Broker::start();
    let events = Subscriber::start(&broker, &topic("events"));
    let pictures = format!("images:{}/tests/data/*.jpg", env!("CARGO_MANIFEST_DIR"));
    let url = broker_url(&broker);
    let server = Server::start_with(
        |text| {
            let text = common::with_input(text, &pictures).replace("fps = 30 ", "fps = 1 ");
            with_mqtt(
                text,
                &url,
                TOPIC,
                &[
                    ("detection", "enabled", "true"),
                    ("classification", "enabled", "true"),
                ],
            )
        },
        &[],
    );
    wait_mqtt(&server, "connected");
    let discovery = Subscriber::start(&broker, "homeassistant/#");
    let limit = Duration::from_secs(120);
    let dog = events.expect("a dog entering", limit, |m| {
        m.json() == json!({"type": "detection_enter", "label": "dog"})
    });
    assert!(!dog.retained);
    events.expect("the dog leaving", limit, |m| {
        m.json() == json!({"type": "detection_leave", "label": "dog"})
    });
    events.expect("the bald eagle's label", limit, |m| {
        let event = m.json();
        event["type"] == "label_change"
            && event["task"] == "classification"
            && event["label"] == "bald eagle"
    });
    // Home Assistant's binary sensor for every class the detection model knows.
    let person = discovery.expect("the person sensor", MESSAGE, |m| {
        m.topic == "homeassistant/binary_sensor/test_cam/detection_person/config"
    });
    assert_eq!(person.json()["state_topic"], json!(topic("presence")));
    let labels = Subscriber::start(&broker, &topic("labels"));
    let shown = labels.expect("the labels", MESSAGE, |m| {
        m.json()["classification"].is_string()
    });
    assert!(shown.json().get("action").is_some(), "{}", shown.payload);
    // Detection turned off takes its entities away (an empty retained config).
    let (code, body) = server.put("/api/v1/config/detection/enabled", "false");
    assert_eq!(code, 200, "{body}");
    discovery.expect("the person sensor removed", MESSAGE, |m| {
        m.topic.ends_with("/detection_person/config") && m.payload.is_empty()
    });
}

#[test]
fn with_tracking_the_events_carry_the_track_ids() {
    let broker = Broker::start();
    let events = Subscriber::start(&broker, &topic("events"));
    let dog = format!("images:{}/tests/data/dog.jpg", env!("CARGO_MANIFEST_DIR"));
    let url = broker_url(&broker);
    let server = Server::start_with(
        |text| {
            let text = common::with_input(text, &dog).replace("fps = 30 ", "fps = 5 ");
            with_mqtt(
                text,
                &url,
                TOPIC,
                &[
                    ("detection", "enabled", "true"),
                    ("detection", "tracking_enabled", "true"),
                ],
            )
        },
        &[],
    );
    let limit = Duration::from_secs(120);
    let track_ids = |m: &Received, kind: &str| {
        let event = m.json();
        (event["type"] == kind && event["label"] == "dog").then(|| event["track_ids"].clone())
    };
    let entered = events.expect("the dog's track entering", limit, |m| {
        track_ids(m, "detection_enter").is_some()
    });
    let ids = track_ids(&entered, "detection_enter").unwrap();
    assert!(
        ids.as_array()
            .is_some_and(|ids| !ids.is_empty() && ids.iter().all(Json::is_u64)),
        "{}",
        entered.payload
    );
    // Detection off: the dog leaves with the same track.
    let (code, body) = server.put("/api/v1/config/detection/enabled", "false");
    assert_eq!(code, 200, "{body}");
    let left = events.expect("the dog's track leaving", MESSAGE, |m| {
        track_ids(m, "detection_leave").is_some()
    });
    assert_eq!(track_ids(&left, "detection_leave"), Some(ids));
}

#[test]
fn a_set_over_mqtt_lands_in_the_file_with_its_comments_and_shows_on_rest_and_sse() {
    let broker = Broker::start();
    let server = start(&broker, &[]);
    let sse = server.events();
    let answers = Subscriber::start(&broker, &format!("{TOPIC}/set/+/+/result"));
    let events = Subscriber::start(&broker, &topic("events"));
    publish(
        &broker,
        &format!("{TOPIC}/set/detection/confidence_threshold"),
        "0.7",
    );
    let answer = answers.expect("the answer", MESSAGE, |_| true);
    assert_eq!(
        answer.topic,
        format!("{TOPIC}/set/detection/confidence_threshold/result")
    );
    assert_eq!(answer.json(), json!(0.7));
    let file = server.file();
    assert!(
        file.contains("confidence_threshold = 0.7  # minimum confidence of a box (0..1)"),
        "{file}"
    );
    assert!(file.starts_with("# visiond configuration: the single truth"));
    assert_eq!(
        server.get_json("/api/v1/config/detection/confidence_threshold"),
        json!(0.7)
    );
    expect_event(&sse, "change", MESSAGE, |e| {
        e["key"] == "detection.confidence_threshold"
            && e["value"] == json!(0.7)
            && e["source"] == "mqtt"
    });
    events.expect("the change event", MESSAGE, |m| {
        let event = m.json();
        event["type"] == "change" && event["key"] == "detection.confidence_threshold"
    });
}

#[test]
fn a_bad_value_or_a_write_without_permission_gets_an_error_and_changes_nothing() {
    let broker = Broker::start();
    let server = start(&broker, &[]);
    let answers = Subscriber::start(&broker, &format!("{TOPIC}/set/+/+/result"));
    let before = server.file();
    for (key, payload, error) in [
        ("detection/confidence_threshold", "1.5", "out of range 0..1"),
        ("detection/confidence_threshold", "high", "not JSON"),
        (
            "detection/sparkles",
            "true",
            "no such property `detection.sparkles`",
        ),
        ("mqtt/url", "\"mqtt://me:hunter2@\"", "expected mqtt://"),
    ] {
        publish(&broker, &format!("{TOPIC}/set/{key}"), payload);
        let answer = answers
            .expect("an error", MESSAGE, |m| m.topic.contains(key))
            .json();
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(error), "{key} {payload}: {answer}");
        assert!(!message.contains("hunter2"), "{answer}");
        assert_eq!(answer["key"], json!(key.replace('/', ".")));
        assert_eq!(server.file(), before, "{key} {payload} changed the file");
    }
    // With an API token, MQTT control is off unless allow_control says otherwise.
    let (code, body) = server.put("/api/v1/config/server/auth_token", "\"t0ken\"");
    assert_eq!(code, 200, "{body}");
    let before = server.file();
    publish(&broker, &format!("{TOPIC}/set/input/fps"), "5");
    let answer = answers
        .expect("a refusal", MESSAGE, |m| m.topic.contains("input/fps"))
        .json();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("mqtt.allow_control"),
        "{answer}"
    );
    assert_eq!(server.file(), before);
    assert_eq!(server.get_json("/api/v1/config/input/fps"), json!(10));
    // allow_control leaves it to the broker's ACLs. The change reconnects: a write is
    // taken once the new connection's status is out.
    let statuses = Subscriber::start(&broker, &topic("status"));
    let (code, body) = server.request(
        "PUT",
        "/api/v1/config/mqtt/allow_control",
        &[
            ("Authorization", "Bearer t0ken"),
            ("Content-Type", "application/json"),
        ],
        Some("true"),
    );
    assert_eq!(code, 200, "{body}");
    statuses.expect("the old connection's goodbye", MESSAGE, |m| {
        m.json()["state"] == "offline"
    });
    statuses.expect("the new connection", MESSAGE, |m| {
        m.json()["state"] == "online"
    });
    publish(&broker, &format!("{TOPIC}/set/input/fps"), "5");
    let answer = answers.expect("the applied value", MESSAGE, |m| m.json() == json!(5));
    assert!(answer.topic.ends_with("/set/input/fps/result"));
    assert_eq!(server.get_json("/api/v1/config/input/fps"), json!(5));
}

#[test]
fn a_broker_stopped_and_restarted_midrun_leaves_the_fps_alone_and_is_reconnected() {
    let mut broker = Broker::start();
    let server = start(&broker, &[("mqtt", "results_hz", "10.0")]);
    // The median of a few samples a second apart: one slow second of a loaded machine
    // is not the pipeline slowing down.
    let fps = |server: &Server| {
        let mut samples: Vec<f64> = (0..5)
            .map(|i| {
                if i > 0 {
                    std::thread::sleep(Duration::from_secs(1)); // sampling, not waiting
                }
                server.get_json("/api/v1/status")["pipeline"]["fps"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        samples[2]
    };
    // The test pattern runs at 10 FPS.
    server.wait_for("/api/v1/status", CONNECT, |s| {
        s["pipeline"]["fps"].as_f64() > Some(5.0)
    });
    let before = fps(&server);

    broker.stop();
    let status = wait_mqtt(&server, "error");
    assert!(
        status["mqtt"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{status}"
    );
    // Results and events pile up meanwhile: the pipeline does not notice.
    let during = fps(&server);
    assert!(
        during > before * 0.8,
        "{during} FPS with the broker down, {before} before"
    );
    broker.restart();
    wait_mqtt(&server, "connected");
    // The restarted broker kept nothing: visiond publishes its status anew.
    let status = Subscriber::start(&broker, &topic("status"));
    status.expect("the status again", MESSAGE, |m| {
        m.json()["state"] == "online"
    });
}

#[test]
fn a_wrong_password_is_an_error_in_the_status_and_a_right_one_connects() {
    let broker = Broker::start_with(|dir, _| {
        let passwords = password_file(dir, "visiond", "right-horse");
        format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        )
    });
    let server = start_on(
        &broker_url(&broker),
        &[
            ("mqtt", "username", "\"visiond\""),
            ("mqtt", "password", "\"wrong-battery\""),
        ],
    );
    let status = wait_mqtt(&server, "error");
    let error = status["mqtt"]["error"].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert_eq!(
        server.get_json("/api/v1/config/mqtt/password"),
        json!("***")
    );

    let sse = server.events();
    let (code, body) = server.put("/api/v1/config/mqtt/password", "\"right-horse\"");
    assert_eq!((code, body.as_str()), (200, "\"***\""));
    expect_event(&sse, "change", MESSAGE, |e| {
        e["key"] == "mqtt.password" && e["value"] == "***"
    });
    wait_mqtt(&server, "connected");
    let shown = format!(
        "{}{}{}",
        server.get("/api/v1/status").1,
        server.get("/api/v1/config").1,
        server.log_text()
    );
    for secret in ["right-horse", "wrong-battery"] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
    assert!(server.file().contains("password = \"right-horse\""));
}

#[test]
fn tls_with_a_test_certificate_connects_and_a_stranger_ca_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates(certs.path());
    let tls_port = common::free_port();
    let broker = Broker::start_with(|_, _| {
        format!(
            "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        )
    });
    broker.wait_listening(tls_port);
    let url = format!("mqtts://localhost:{tls_port}");
    let ca_file = format!("{:?}", ca.display().to_string());
    let server = start_on(&url, &[("mqtt", "ca_file", &ca_file)]);
    wait_mqtt(&server, "connected");
    // The plain listener's client sees what came in over TLS.
    let status = Subscriber::start(&broker, &topic("status"));
    status.expect("the status", MESSAGE, |m| m.json()["state"] == "online");

    // The system's CAs do not know the test CA: refused, and said why.
    let (code, body) = server.put("/api/v1/config/mqtt/ca_file", "\"\"");
    assert_eq!(code, 200, "{body}");
    let refused = wait_mqtt(&server, "error");
    let error = refused["mqtt"]["error"].as_str().unwrap();
    assert!(
        error.contains("TLS") || error.contains("certificate"),
        "{error}"
    );
}

#[test]
fn a_broker_that_never_answers_is_an_error_the_queue_stays_bounded_and_the_fps_alone() {
    // Takes connections and never says a word: a broker hung or far too slow.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("mqtt://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let server = start_on(&url, &[("mqtt", "results_hz", "30.0")]);
    let status = wait_mqtt(&server, "error");
    let error = status["mqtt"]["error"].as_str().unwrap();
    assert!(error.contains("timeout"), "{error}");
    // 30 results a second fill the queue within seconds: the oldest go, counted; the
    // pipeline keeps its 10 FPS meanwhile.
    server.wait_for("/api/v1/status", CONNECT, |s| {
        s["mqtt"]["dropped"].as_u64() > Some(0) && s["pipeline"]["fps"].as_f64() > Some(5.0)
    });
}
