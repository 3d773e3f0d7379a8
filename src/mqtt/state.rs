//! The MQTT connection's state for `/api/v1/status` and the page: what it is, why, and
//! what was dropped meanwhile. Never holds the password (the broker URL has no login).

use serde::Serialize;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    #[default]
    Disabled,
    Connecting,
    Connected,
    Error,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct MqttStatus {
    pub state: Connection,
    /// `mqtt.url`.
    pub broker: String,
    /// `mqtt.topic` with the hostname filled in.
    pub topic: String,
    /// Why it is in `error` (refused login, broker unreachable, bad CA file, ...).
    pub error: Option<String>,
    /// Messages dropped by the full queue while the broker could not take them.
    pub dropped: u64,
    /// Whether `<topic>/set/...` writes are taken.
    pub control: bool,
}

#[derive(Default)]
pub struct State(Mutex<MqttStatus>);

impl State {
    pub fn get(&self) -> MqttStatus {
        self.lock().clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut MqttStatus)) {
        change(&mut self.lock());
    }

    /// The state as a session starts: connecting to `broker` under `topic`.
    pub fn start(&self, broker: &str, topic: &str) {
        *self.lock() = MqttStatus {
            state: Connection::Connecting,
            broker: broker.to_owned(),
            topic: topic.to_owned(),
            ..MqttStatus::default()
        };
    }

    pub fn set(&self, state: Connection, error: Option<String>) {
        self.update(|status| {
            status.state = state;
            status.error = error;
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MqttStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
