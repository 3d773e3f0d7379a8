//! The typed settings snapshot that the pipeline and the server read.
//!
//! Built from the validated value tree (schema defaults filled in), never parsed from text
//! directly, so its field list must match the schema: a test below holds them together.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub server: Server,
    pub input: Input,
    pub webrtc: Webrtc,
    pub log: Log,
    pub engine: Engine,
    pub mqtt: Mqtt,
    pub output: Output,
    pub classification: Classification,
    pub detection: Detection,
    pub segmentation: Segmentation,
    pub pose: Pose,
    pub action: Action,
    pub background: Background,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub listen: String,
    pub title: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub auth_token: String,
    pub auth_viewers: bool,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_request_rate: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub uri: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub flip: String,
    #[serde(rename = "loop")]
    pub looping: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webrtc {
    pub stun: String,
    pub ice_hosts: Vec<String>,
    pub nat_1to1_ip: String,
    pub max_viewers: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    pub backend: String,
    pub threads: u32,
    pub onnxruntime_lib: String,
    pub gpu_device: u32,
    pub frame_on_gpu: bool,
    pub cuda_graphs: bool,
    pub fp16: bool,
    pub cache_dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mqtt {
    pub enabled: bool,
    pub url: String,
    pub ca_file: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub topic: String,
    pub results_hz: f64,
    pub retain_status: bool,
    pub allow_control: bool,
    pub discovery_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub codec: String,
    pub bitrate: u32,
}

/// The keys every model section shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub enabled: bool,
    pub network: String,
    pub labels: String,
    pub input_layer: String,
    pub output_layer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    #[serde(flatten)]
    pub model: Model,
    pub confidence_threshold: f32,
    pub output_smoothing: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    #[serde(flatten)]
    pub model: Model,
    pub confidence_threshold: f32,
    pub clustering_threshold: f32,
    pub overlay_alpha: u8,
    pub overlay: Vec<String>,
    pub tracking_enabled: bool,
    pub tracking_min_frames: u32,
    pub tracking_drop_frames: u32,
    pub tracking_overlap_threshold: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segmentation {
    #[serde(flatten)]
    pub model: Model,
    pub overlay_alpha: u8,
    pub visualize: String,
    pub filter_mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    #[serde(flatten)]
    pub model: Model,
    pub confidence_threshold: f32,
    pub overlay: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    #[serde(flatten)]
    pub model: Model,
    pub confidence_threshold: f32,
    pub skip_frames: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Background {
    #[serde(flatten)]
    pub model: Model,
    pub mode: String,
    pub color: String,
    pub image: String,
}

impl Settings {
    /// The shared part of a model section by name (`"detection"`), for code that treats the
    /// six alike.
    pub fn model(&self, section: &str) -> Option<&Model> {
        Some(match section {
            "classification" => &self.classification.model,
            "detection" => &self.detection.model,
            "segmentation" => &self.segmentation.model,
            "pose" => &self.pose.model,
            "action" => &self.action.model,
            "background" => &self.background.model,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::values::Values;

    #[test]
    fn typed_settings_mirror_the_schema_exactly() {
        let defaults = Values::defaults();
        let settings = defaults.to_settings();
        let back = serde_json::to_value(&settings).unwrap();
        // f32 fields round-trip with f32 precision, so compare after the same rounding.
        let expected: super::Settings = serde_json::from_value(defaults.tree()).unwrap();
        assert_eq!(back, serde_json::to_value(expected).unwrap());
        let sections = back.as_object().unwrap();
        for key in crate::settings::schema::SCHEMA.iter() {
            assert!(
                sections[key.section].get(key.name).is_some(),
                "{} missing",
                key.path()
            );
        }
        let typed_keys: usize = sections
            .values()
            .map(|s| s.as_object().unwrap().len())
            .sum();
        assert_eq!(typed_keys, crate::settings::schema::SCHEMA.len());
    }
}
