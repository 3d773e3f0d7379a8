//! What changed between two results: detection classes entering and leaving (with the
//! tracker's ids when tracking is on) and the classification or action label changing.

use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// The tasks that show one label at a time.
const LABELLED: [&str; 2] = ["classification", "action"];

/// The state the events are differences of.
#[derive(Default)]
pub struct Scene {
    /// Each detection class present, with the track ids of its boxes (none untracked).
    present: BTreeMap<String, BTreeSet<u64>>,
    labels: BTreeMap<&'static str, Option<String>>,
}

/// One `update`'s findings.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub events: Vec<Json>,
    pub presence_changed: bool,
    pub labels_changed: bool,
}

impl Scene {
    /// Takes in the latest results (`/api/v1/results`) and says what changed.
    pub fn update(&mut self, results: &Json) -> Changes {
        let mut changes = Changes::default();
        let present = present_classes(results);
        for (label, ids) in &present {
            if !self.present.contains_key(label) {
                changes
                    .events
                    .push(detection("detection_enter", label, ids));
            }
        }
        for (label, ids) in &self.present {
            if !present.contains_key(label) {
                changes
                    .events
                    .push(detection("detection_leave", label, ids));
            }
        }
        changes.presence_changed = present != self.present;
        self.present = present;
        for task in LABELLED {
            let label = results[task]["label"].as_str().map(str::to_owned);
            let previous = self.labels.insert(task, label.clone()).flatten();
            if previous != label {
                changes.labels_changed = true;
                changes.events.push(json!({
                    "type": "label_change", "task": task, "label": label, "previous": previous,
                }));
            }
        }
        changes
    }

    /// `{label: [track ids]}` of the classes present: `<topic>/presence`.
    pub fn presence(&self) -> Json {
        Json::Object(
            self.present
                .iter()
                .map(|(label, ids)| (label.clone(), json!(ids)))
                .collect::<Map<_, _>>(),
        )
    }

    /// `{task: label or null}`: `<topic>/labels`.
    pub fn labels(&self) -> Json {
        let labels = LABELLED.iter().map(|task| {
            (
                task.to_string(),
                json!(self.labels.get(task).cloned().flatten()),
            )
        });
        Json::Object(labels.collect())
    }
}

fn present_classes(results: &Json) -> BTreeMap<String, BTreeSet<u64>> {
    let mut present: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for found in results["detection"].as_array().into_iter().flatten() {
        if let Some(label) = found["label"].as_str() {
            let ids = present.entry(label.to_owned()).or_default();
            ids.extend(found["track_id"].as_u64());
        }
    }
    present
}

fn detection(kind: &str, label: &str, ids: &BTreeSet<u64>) -> Json {
    let mut event = json!({"type": kind, "label": label});
    if !ids.is_empty() {
        event["track_ids"] = json!(ids);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(found: &[(&str, Option<u64>)]) -> Json {
        let found: Vec<Json> = found
            .iter()
            .map(|(label, id)| json!({"label": label, "track_id": id}))
            .collect();
        json!({"detection": found})
    }

    #[test]
    fn classes_enter_once_and_leave_once_with_their_track_ids() {
        let mut scene = Scene::default();
        let first = scene.update(&boxes(&[("dog", Some(1)), ("car", Some(2))]));
        assert_eq!(
            first.events,
            [
                json!({"type": "detection_enter", "label": "car", "track_ids": [2]}),
                json!({"type": "detection_enter", "label": "dog", "track_ids": [1]}),
            ]
        );
        assert!(first.presence_changed);
        // A second dog is no new class.
        let same = scene.update(&boxes(&[
            ("dog", Some(1)),
            ("dog", Some(3)),
            ("car", Some(2)),
        ]));
        assert!(same.events.is_empty());
        assert_eq!(scene.presence(), json!({"car": [2], "dog": [1, 3]}));
        let left = scene.update(&boxes(&[("car", None)]));
        assert_eq!(
            left.events,
            [json!({"type": "detection_leave", "label": "dog", "track_ids": [1, 3]})]
        );
        // Untracked boxes have no ids to report.
        let gone = scene.update(&json!({"frame": 9}));
        assert_eq!(
            gone.events,
            [json!({"type": "detection_leave", "label": "car"})]
        );
    }

    #[test]
    fn a_label_change_is_one_event_and_the_same_label_none() {
        let mut scene = Scene::default();
        let eagle = json!({"classification": {"label": "bald eagle", "confidence": 0.9}});
        let changes = scene.update(&eagle);
        assert_eq!(
            changes.events,
            [
                json!({"type": "label_change", "task": "classification", "label": "bald eagle", "previous": null})
            ]
        );
        assert!(changes.labels_changed && !changes.presence_changed);
        assert_eq!(scene.update(&eagle), Changes::default());
        assert_eq!(
            scene.labels(),
            json!({"classification": "bald eagle", "action": null})
        );
        let cleared = scene.update(&json!({"classification": null}));
        assert_eq!(cleared.events[0]["previous"], json!("bald eagle"));
        assert_eq!(cleared.events[0]["label"], Json::Null);
    }
}
