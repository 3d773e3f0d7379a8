//! The topics visiond publishes and listens on, all under the `mqtt.topic` prefix.

/// `mqtt.topic` with `<hostname>` filled in, and the topics under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Topics {
    pub base: String,
}

/// Stands for this machine's name in `mqtt.topic` and `mqtt.client_id`.
const HOSTNAME: &str = "<hostname>";

/// `<hostname>` replaced by this machine's name (`visiond` if it has none).
pub fn with_hostname(template: &str) -> String {
    let name = crate::hostname::hostname();
    let name = if name.is_empty() {
        "visiond".into()
    } else {
        name
    };
    template.replace(HOSTNAME, &name)
}

impl Topics {
    pub fn new(template: &str) -> Topics {
        Topics {
            base: with_hostname(template),
        }
    }

    /// Retained: online (with models, FPS, input) or, by the last will, offline.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// The `/api/v1/results` object, at `mqtt.results_hz`.
    pub fn results(&self) -> String {
        format!("{}/results", self.base)
    }

    /// Detections entering and leaving, labels changing, config changes and errors.
    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }

    /// Retained: the detection classes present now, with their track ids.
    pub fn presence(&self) -> String {
        format!("{}/presence", self.base)
    }

    /// Retained: the classification and action labels shown now.
    pub fn labels(&self) -> String {
        format!("{}/labels", self.base)
    }

    /// What control subscribes to: `<topic>/set/<section>/<key>`.
    pub fn set_filter(&self) -> String {
        format!("{}/set/+/+", self.base)
    }

    /// `(section, key)` of a control topic, or `None` for any other topic.
    pub fn setting_of<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix("/set/")?;
        let (section, key) = rest.split_once('/')?;
        (!section.is_empty() && !key.is_empty() && !key.contains('/')).then_some((section, key))
    }

    /// Where the answer to a control write goes.
    pub fn answer(&self, section: &str, key: &str) -> String {
        format!("{}/set/{section}/{key}/result", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_topics_name_one_section_and_key() {
        let topics = Topics::new("site/cam");
        assert_eq!(
            topics.setting_of("site/cam/set/detection/enabled"),
            Some(("detection", "enabled"))
        );
        assert_eq!(
            topics.setting_of("site/cam/set/detection/enabled/result"),
            None
        );
        assert_eq!(topics.setting_of("site/cam/set/detection"), None);
        assert_eq!(topics.setting_of("site/camera/set/a/b"), None);
        assert_eq!(
            topics.answer("detection", "enabled"),
            "site/cam/set/detection/enabled/result"
        );
    }

    #[test]
    fn the_hostname_fills_its_placeholder() {
        let topics = Topics::new("visiond/<hostname>");
        assert!(!topics.base.contains('<'), "{}", topics.base);
        assert!(topics.base.starts_with("visiond/"));
    }
}
