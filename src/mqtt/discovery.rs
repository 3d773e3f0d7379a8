//! Home Assistant's MQTT discovery: retained configs under `mqtt.discovery_prefix` that make
//! visiond a device with an entity for each class the detection model knows (present or
//! not), one for each shown label (classification, action) and one for the FPS, with no
//! YAML to write. They follow the settings: a model turned off takes its entities away.

use super::topics::Topics;
use crate::settings::Settings;
use crate::vision::catalog::{read_labels, Catalog};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;

/// Config topic -> config, for every entity the settings call for.
pub fn configs(
    settings: &Settings,
    catalog: Option<&Catalog>,
    topics: &Topics,
) -> BTreeMap<String, Json> {
    let prefix = &settings.mqtt.discovery_prefix;
    if prefix.is_empty() {
        return BTreeMap::new();
    }
    let node = slug(&topics.base);
    let common = json!({
        "device": {
            "identifiers": [node],
            "name": topics.base,
            "manufacturer": "visiond",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "availability_topic": topics.status(),
        "availability_template": "{{ value_json.state }}",
    });
    let mut entities = vec![(
        "sensor",
        "fps".to_owned(),
        json!({
            "name": "FPS",
            "state_topic": topics.status(),
            "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps",
            "state_class": "measurement",
        }),
    )];
    for task in ["classification", "action"] {
        if settings.model(task).is_some_and(|m| m.enabled) {
            entities.push((
                "sensor",
                task.to_owned(),
                json!({
                    "name": task,
                    "state_topic": topics.labels(),
                    "value_template": format!("{{{{ value_json.{task} or '' }}}}"),
                }),
            ));
        }
    }
    if settings.detection.model.enabled {
        for label in detection_labels(settings, catalog) {
            // The label as a JSON string is a Jinja string literal too.
            let quoted = Json::from(label.as_str()).to_string();
            entities.push((
                "binary_sensor",
                format!("detection_{}", slug(&label)),
                json!({
                    "name": label,
                    "state_topic": topics.presence(),
                    "value_template": format!("{{{{ 'ON' if {quoted} in value_json else 'OFF' }}}}"),
                }),
            ));
        }
    }
    entities
        .into_iter()
        .map(|(component, object, mut config)| {
            let unique_id = format!("{node}_{object}");
            config["unique_id"] = json!(unique_id);
            for (key, value) in common.as_object().expect("an object") {
                config[key] = value.clone();
            }
            (
                format!("{prefix}/{component}/{node}/{object}/config"),
                config,
            )
        })
        .collect()
}

/// The detection model's classes: its labels file, else the catalog's; none if unknown.
fn detection_labels(settings: &Settings, catalog: Option<&Catalog>) -> Vec<String> {
    let model = &settings.detection.model;
    let labels = if model.labels.is_empty() {
        catalog
            .and_then(|c| c.get(&model.network).map(|entry| c.labels(entry)))
            .unwrap_or_else(|| Ok(Vec::new()))
    } else {
        read_labels(Path::new(&model.labels))
    };
    let mut labels = labels.unwrap_or_else(|e| {
        tracing::warn!("mqtt discovery: {e:#}");
        Vec::new()
    });
    labels.retain(|l| !l.is_empty());
    labels.dedup();
    labels
}

/// Home Assistant's ids take `[a-zA-Z0-9_-]`.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::values::Values;

    #[test]
    fn each_enabled_models_entities_are_announced_and_none_without_a_prefix() {
        let mut settings = Values::defaults().to_settings();
        let topics = Topics::new("visiond/cam-1");
        let labels = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(labels.path(), "person\nteddy bear\n").unwrap();
        settings.detection.model.enabled = true;
        settings.detection.model.labels = labels.path().display().to_string();
        settings.classification.model.enabled = true;
        let configs = configs(&settings, None, &topics);
        let names: Vec<&str> = configs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "homeassistant/binary_sensor/visiond_cam-1/detection_person/config",
                "homeassistant/binary_sensor/visiond_cam-1/detection_teddy_bear/config",
                "homeassistant/sensor/visiond_cam-1/classification/config",
                "homeassistant/sensor/visiond_cam-1/fps/config",
            ]
        );
        let bear =
            &configs["homeassistant/binary_sensor/visiond_cam-1/detection_teddy_bear/config"];
        assert_eq!(bear["state_topic"], "visiond/cam-1/presence");
        assert_eq!(
            bear["value_template"],
            "{{ 'ON' if \"teddy bear\" in value_json else 'OFF' }}"
        );
        assert_eq!(bear["availability_topic"], "visiond/cam-1/status");
        assert_eq!(bear["unique_id"], "visiond_cam-1_detection_teddy_bear");
        settings.mqtt.discovery_prefix = String::new();
        assert!(super::configs(&settings, None, &topics).is_empty());
    }
}
