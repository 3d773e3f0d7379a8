//! What a session says, all through the outbox: the status, results at their rate, events
//! (from the results and from the settings store), presence, labels and Home Assistant's
//! discovery; and the task that hands the outbox to the client while connected.

use super::control;
use super::discovery;
use super::events::Scene;
use super::outbox::{Message, Outbox};
use super::topics::Topics;
use super::Parts;
use crate::pipeline::status::{ModelState, RuntimeStatus};
use crate::settings::Event as SettingsEvent;
use rumqttc::AsyncClient;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Hands the outbox's messages to the client while connected; while not, they wait (and
/// the outbox drops as it fills).
pub async fn send_all(
    client: AsyncClient,
    outbox: Arc<Outbox>,
    mut connected: watch::Receiver<bool>,
) {
    loop {
        let message = outbox.pop().await;
        if connected.wait_for(|c| *c).await.is_err() {
            return;
        }
        let sent = client
            .publish_bytes(message.topic, message.qos, message.retain, message.payload)
            .await;
        if sent.is_err() {
            return; // the event loop is gone: the session is ending
        }
    }
}

/// Which discovery configs to publish.
#[derive(Clone, Copy, PartialEq)]
pub enum Resend {
    /// Those that changed since last published.
    Changed,
    /// All: a broker that restarted may have lost them.
    All,
}

/// What the session publishes, all through the outbox.
pub struct Publisher {
    parts: Parts,
    topics: Topics,
    outbox: Arc<Outbox>,
    retain_status: bool,
    scene: Scene,
    /// The discovery configs last published, by topic.
    announced: BTreeMap<String, Json>,
    /// The input's and the models' states as last published: a change is published at
    /// once, not at the next period.
    states: Json,
}

impl Publisher {
    pub fn new(parts: Parts, topics: Topics, outbox: Arc<Outbox>, retain_status: bool) -> Self {
        Publisher {
            parts,
            topics,
            outbox,
            retain_status,
            scene: Scene::default(),
            announced: BTreeMap::new(),
            states: Json::Null,
        }
    }

    /// Everything a broker (perhaps restarted, without its retained messages) should hold.
    pub fn announce_all(&mut self) {
        self.status();
        self.announce_entities(Resend::All);
        self.presence();
        self.labels();
    }

    pub fn status(&mut self) {
        let runtime = self.parts.shared.status();
        self.states = states(&runtime);
        let status = json!({
            "state": "online",
            "version": env!("CARGO_PKG_VERSION"),
            "fps": (runtime.pipeline.fps * 10.0).round() / 10.0,
            "frames": runtime.pipeline.frames,
            "input": runtime.input,
            "models": runtime.models,
        });
        let control = control::allowed(&self.parts.store.settings());
        let dropped = self.outbox.dropped();
        self.parts.state.update(|state| {
            state.control = control;
            state.dropped = dropped;
        });
        self.outbox.push(Message::periodic(
            self.topics.status(),
            status.to_string(),
            self.retain_status,
        ));
    }

    /// The status, if the input's or a model's state changed since it was last published.
    fn status_if_changed(&mut self) {
        if states(&self.parts.shared.status()) != self.states {
            self.status();
        }
    }

    pub fn results(&self) {
        let results = self.parts.shared.results();
        if results.is_null() {
            return; // no frame yet
        }
        self.outbox.push(Message::periodic(
            self.topics.results(),
            results.to_string(),
            false,
        ));
    }

    /// Takes in new results: events, presence and labels, and the status if states changed.
    pub fn scene(&mut self, results: &Json) {
        self.status_if_changed();
        let changes = self.scene.update(results);
        for event in changes.events {
            self.event(&event);
        }
        if changes.presence_changed {
            self.presence();
        }
        if changes.labels_changed {
            self.labels();
        }
    }

    /// The same events as SSE's `change`, `config_error` and `config_ok`.
    pub fn settings_event(&self, event: &SettingsEvent) {
        self.event(&json!(event));
    }

    fn event(&self, event: &Json) {
        self.outbox.push(Message::event(
            self.topics.events(),
            event.to_string(),
            false,
        ));
    }

    fn presence(&self) {
        let presence = self.scene.presence().to_string();
        self.outbox
            .push(Message::event(self.topics.presence(), presence, true));
    }

    fn labels(&self) {
        let labels = self.scene.labels().to_string();
        self.outbox
            .push(Message::event(self.topics.labels(), labels, true));
    }

    /// Publishes the discovery configs (those that changed, or all), and empties those of
    /// entities gone.
    pub fn announce_entities(&mut self, resend: Resend) {
        let settings = self.parts.store.settings();
        let configs = discovery::configs(&settings, self.parts.catalog.as_deref(), &self.topics);
        for topic in self.announced.keys() {
            if !configs.contains_key(topic) {
                self.outbox.push(Message::event(topic.clone(), "", true));
            }
        }
        for (topic, config) in &configs {
            if resend == Resend::All || self.announced.get(topic) != Some(config) {
                self.outbox
                    .push(Message::event(topic.clone(), config.to_string(), true));
            }
        }
        self.announced = configs;
    }
}

/// The input's state and each model's, which the status reports as soon as they change.
fn states(runtime: &RuntimeStatus) -> Json {
    let models: BTreeMap<&str, ModelState> = runtime
        .models
        .iter()
        .map(|(section, model)| (section.as_str(), model.state))
        .collect();
    json!({"input": runtime.input.state, "models": models})
}
