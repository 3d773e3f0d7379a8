//! `<topic>/set/<section>/<key>`: a bare JSON value, written as a REST PUT writes it (through
//! the one settings store: to the file first, then applied) and answered on
//! `<topic>/set/<section>/<key>/result` with the applied value or `{"error", "key"}`.

use super::outbox::{Message, Outbox};
use super::topics::Topics;
use crate::settings::{Settings, Source, Store};
use rumqttc::Publish;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Whether writes over MQTT are taken: always without an API token; with one, only when
/// `mqtt.allow_control` leaves it to the broker's ACLs.
pub fn allowed(settings: &Settings) -> bool {
    settings.server.auth_token.is_empty() || settings.mqtt.allow_control
}

/// Takes the control writes in the order they came, one at a time (each waits for its
/// file write), and queues each answer.
pub async fn serve(
    store: Arc<Store>,
    topics: Topics,
    mut writes: mpsc::Receiver<Publish>,
    outbox: Arc<Outbox>,
) {
    while let Some(publish) = writes.recv().await {
        let Some((section, key)) = topics.setting_of(&publish.topic) else {
            continue;
        };
        let (section, key) = (section.to_owned(), key.to_owned());
        let answer = match set(&store, &section, &key, &publish.payload).await {
            Ok(value) => value,
            Err(message) => json!({"error": message, "key": format!("{section}.{key}")}),
        };
        outbox.push(Message::event(
            topics.answer(&section, &key),
            answer.to_string(),
            false,
        ));
    }
}

/// The value as now shown (secrets masked), or why nothing changed.
async fn set(store: &Arc<Store>, section: &str, key: &str, payload: &[u8]) -> Result<Json, String> {
    if !allowed(&store.settings()) {
        return Err(
            "MQTT control is off: server.auth_token is set and mqtt.allow_control is false".into(),
        );
    }
    let value: Json =
        serde_json::from_slice(payload).map_err(|e| format!("the value is not JSON: {e}"))?;
    let edits = vec![(section.to_owned(), key.to_owned(), value)];
    store
        .clone()
        .write_async(edits, Source::Mqtt)
        .await
        .map_err(|e| e.to_string())?;
    store
        .get(section, key)
        .ok_or_else(|| format!("no such property `{section}.{key}`"))
}
