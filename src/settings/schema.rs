//! Every setting visiond knows: section, key, type, range, default and meaning, declared once.
//!
//! Validation (file and REST alike), the OpenAPI description, the page's controls and the
//! typed snapshot all derive from this table, so a range or a default lives in one place.

use super::redact;
use serde_json::{json, Value as Json};
use std::sync::LazyLock;

/// The six model sections, in the order the page shows them.
pub const MODEL_SECTIONS: [&str; 6] = [
    "classification",
    "detection",
    "segmentation",
    "pose",
    "action",
    "background",
];

/// What values a key accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Text,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A list of distinct strings out of a fixed set (overlay flags).
    Flags(&'static [&'static str]),
    /// A list of free-form strings.
    TextList,
    /// A list of web origins (`scheme://host[:port]`), or `*` for any.
    Origins,
    /// `#rrggbb`.
    Color,
    /// `host:port`, parsed as a socket address.
    SocketAddr,
    /// An input URI: `webrtc`, `test`, `images:...`, `file:...`, `v4l2:...`, `rtsp://...`.
    InputUri,
    /// An MQTT broker: `mqtt://host[:port]` or `mqtts://host[:port]`, no credentials.
    BrokerUrl,
    /// An MQTT topic prefix: no wildcards, no empty levels at its ends; `empty_ok` when an
    /// empty value turns the feature off.
    Topic {
        empty_ok: bool,
    },
}

/// One setting.
#[derive(Debug, Clone)]
pub struct Key {
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub default: Json,
    pub doc: &'static str,
    /// Takes effect only on restart: a change is reported as `restart_required`.
    pub restart: bool,
}

impl Key {
    pub fn path(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// Checks a JSON value against this key's kind; the error says what was expected.
    pub fn check(&self, value: &Json) -> Result<Json, String> {
        self.kind
            .check(value)
            .map_err(|message| redact::message(&self.path(), value, message))
    }
}

impl Kind {
    /// Returns the value in canonical form (floats as floats) or why it is refused.
    pub fn check(&self, value: &Json) -> Result<Json, String> {
        match self {
            Kind::Bool => value
                .as_bool()
                .map(Json::from)
                .ok_or_else(|| format!("expected true or false, got {value}")),
            Kind::Int { min, max } => {
                let n = value
                    .as_i64()
                    .ok_or_else(|| format!("expected an integer, got {value}"))?;
                in_range(n, *min, *max)?;
                Ok(Json::from(n))
            }
            Kind::Float { min, max } => {
                let x = value
                    .as_f64()
                    .ok_or_else(|| format!("expected a number, got {value}"))?;
                in_range(x, *min, *max)?;
                Ok(json!(x))
            }
            Kind::Text => text(value).map(Json::from),
            Kind::Choice(options) => {
                let s = text(value)?;
                if options.contains(&s) {
                    Ok(Json::from(s))
                } else {
                    Err(format!(
                        "expected one of {}, got {value}",
                        options.join(" | ")
                    ))
                }
            }
            Kind::Flags(options) => {
                let items = string_list(value)?;
                for (i, item) in items.iter().enumerate() {
                    if !options.contains(&item.as_str()) {
                        return Err(format!(
                            "unknown flag \"{item}\": expected any of {}",
                            options.join(", ")
                        ));
                    }
                    if items[..i].contains(item) {
                        return Err(format!("flag \"{item}\" is listed twice"));
                    }
                }
                Ok(Json::from(items))
            }
            Kind::TextList => string_list(value).map(Json::from),
            Kind::Origins => {
                let items = string_list(value)?;
                match items.iter().find(|item| !is_origin(item)) {
                    Some(bad) => Err(format!(
                        "expected origins as \"http://host[:port]\" or \"https://host[:port]\" (no path), or \"*\", got \"{bad}\""
                    )),
                    None => Ok(Json::from(items)),
                }
            }
            Kind::Color => {
                let s = text(value)?;
                let hex = s.strip_prefix('#').unwrap_or("");
                if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    Ok(Json::from(s))
                } else {
                    Err(format!("expected a colour as \"#rrggbb\", got {value}"))
                }
            }
            Kind::SocketAddr => {
                let s = text(value)?;
                s.parse::<std::net::SocketAddr>()
                    .map(|_| Json::from(s))
                    .map_err(|_| format!("expected an address as \"host:port\", got {value}"))
            }
            Kind::InputUri => {
                let s = text(value)?;
                let known = s == "webrtc"
                    || s == "test"
                    || [
                        "images:", "file:", "v4l2:", "rtsp://", "rtspt://", "rtspu://",
                    ]
                    .iter()
                    .any(|p| s.starts_with(p) && s.len() > p.len());
                if known {
                    Ok(Json::from(s))
                } else {
                    Err(format!(
                        "expected webrtc | test | images:<dir or glob> | file:<path> | v4l2:/dev/videoN | rtsp://..., got {value}"
                    ))
                }
            }
            Kind::BrokerUrl => {
                let s = text(value)?;
                broker_url(s).map(|_| Json::from(s))
            }
            Kind::Topic { empty_ok } => {
                let s = text(value)?;
                if s.is_empty() && *empty_ok {
                    return Ok(Json::from(s));
                }
                let bad = s.is_empty()
                    || s.starts_with('/')
                    || s.ends_with('/')
                    || s.starts_with('$')
                    || s.contains(['+', '#', '\0']);
                if bad {
                    Err(format!(
                        "expected a topic prefix like \"visiond/<hostname>\" (no + or #, no / at either end, not $...), got {value}"
                    ))
                } else {
                    Ok(Json::from(s))
                }
            }
        }
    }
}

/// The scheme (`mqtt` or `mqtts`), host and port of a broker URL, or why it is refused.
/// Credentials belong in `mqtt.username` and `mqtt.password`, the one place for them.
pub fn broker_url(s: &str) -> Result<(bool, String, u16), String> {
    const EXPECTED: &str = "expected mqtt://host[:port] or mqtts://host[:port]";
    let url = url::Url::parse(s).map_err(|e| format!("{EXPECTED}, got \"{s}\" ({e})"))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => return Err(format!("{EXPECTED}, got the scheme \"{other}\"")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{EXPECTED}: put the login in mqtt.username and mqtt.password, not in the URL"
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{EXPECTED} (no path), got \"{s}\""));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{EXPECTED}, got \"{s}\" (no host)"))?;
    // `Url` keeps IPv6 literals bracketed; the socket wants them bare.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    Ok((tls, host, port))
}

/// The same test as the OpenAPI description's pattern for `Kind::Origins`.
fn is_origin(item: &str) -> bool {
    let rest = item
        .strip_prefix("https://")
        .or_else(|| item.strip_prefix("http://"));
    item == "*" || rest.is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

pub const ORIGIN_PATTERN: &str = "^(\\*|https?://[^/]+)$";

fn in_range<T: PartialOrd + std::fmt::Display>(x: T, min: T, max: T) -> Result<(), String> {
    if min <= x && x <= max {
        Ok(())
    } else {
        Err(format!("{x} is out of range {min}..{max}"))
    }
}

fn text(value: &Json) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, got {value}"))
}

fn string_list(value: &Json) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("expected a list of strings, got {value}"))?;
    items
        .iter()
        .map(|item| text(item).map(str::to_owned))
        .collect()
}

/// The whole schema, section by section in file order.
pub static SCHEMA: LazyLock<Vec<Key>> = LazyLock::new(build_schema);

/// Looks up `section.key`.
pub fn find(section: &str, name: &str) -> Option<&'static Key> {
    SCHEMA
        .iter()
        .find(|k| k.section == section && k.name == name)
}

/// Section names in file order.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for key in SCHEMA.iter() {
        if !out.contains(&key.section) {
            out.push(key.section);
        }
    }
    out
}

const UNIT: Kind = Kind::Float { min: 0.0, max: 1.0 };
const ALPHA: Kind = Kind::Int { min: 0, max: 255 };

fn key(
    section: &'static str,
    name: &'static str,
    kind: Kind,
    default: Json,
    doc: &'static str,
) -> Key {
    Key {
        section,
        name,
        kind,
        default,
        doc,
        restart: false,
    }
}

fn restart_key(
    section: &'static str,
    name: &'static str,
    kind: Kind,
    default: Json,
    doc: &'static str,
) -> Key {
    Key {
        restart: true,
        ..key(section, name, kind, default, doc)
    }
}

/// The keys every model section has, then that model's own.
fn model(section: &'static str, network: &'static str, own: Vec<Key>) -> Vec<Key> {
    let mut keys = vec![
        key(
            section,
            "enabled",
            Kind::Bool,
            json!(false),
            "run this model on every frame",
        ),
        key(
            section,
            "network",
            Kind::Text,
            json!(network),
            "a catalog name (visiond models) or a path to an ONNX file",
        ),
        key(
            section,
            "labels",
            Kind::Text,
            json!(""),
            "labels file for a custom ONNX network, one label a line; empty: the catalog's",
        ),
        key(
            section,
            "input_layer",
            Kind::Text,
            json!(""),
            "input tensor name of a custom network; empty: its first input",
        ),
        key(
            section,
            "output_layer",
            Kind::Text,
            json!(""),
            "output tensor names of a custom network, comma-separated; empty: its outputs in order",
        ),
    ];
    keys.extend(own);
    keys
}

fn build_schema() -> Vec<Key> {
    let s = "server";
    let i = "input";
    let w = "webrtc";
    let e = "engine";
    let o = "output";
    let m = "mqtt";
    let mut keys = vec![
        restart_key(s, "listen", Kind::SocketAddr, json!("0.0.0.0:8050"), "address and port of the page, REST and WebRTC signaling"),
        key(s, "title", Kind::Text, json!("visiond"), "title shown on the page"),
        restart_key(s, "tls_cert", Kind::Text, json!(""), "PEM certificate; set both or neither. Browsers need HTTPS for the webcam"),
        restart_key(s, "tls_key", Kind::Text, json!(""), "PEM private key of tls_cert"),
        key(s, "auth_token", Kind::Text, json!(""), "when set, config writes (PUT/PATCH) and WHIP publishing need \"Authorization: Bearer <token>\"; reads stay open"),
        key(s, "auth_viewers", Kind::Bool, json!(false), "true: WHEP viewing, the page's video and reads need the token too"),
        key(s, "allowed_hosts", Kind::TextList, json!([]), "host names the page is reached by besides IP addresses, localhost and this machine's hostname"),
        key(s, "allowed_origins", Kind::Origins, json!([]), "pages elsewhere (\"https://host[:port]\", or \"*\") that may use the API, WHEP and WHIP from the browser; same-origin pages always may"),
        key(s, "max_request_rate", Kind::Int { min: 0, max: 1_000_000 }, json!(2000), "HTTP requests a second served at most, all clients together; more wait their turn (up to 1 s, then 429), so a client polling in a loop leaves the pipeline its CPU. 0: no limit"),
        key(i, "uri", Kind::InputUri, json!("webrtc"), "webrtc | test | images:<dir or glob> | file:<path> | v4l2:/dev/videoN | rtsp://..."),
        key(i, "width", Kind::Int { min: 16, max: 7680 }, json!(1280), "frame width in pixels (16..7680)"),
        key(i, "height", Kind::Int { min: 16, max: 4320 }, json!(720), "frame height in pixels (16..4320)"),
        key(i, "fps", Kind::Int { min: 1, max: 120 }, json!(30), "frames per second (1..120)"),
        key(i, "flip", Kind::Choice(&["none", "horizontal", "vertical", "rotate-180"]), json!("none"), "none | horizontal | vertical | rotate-180"),
        key(i, "loop", Kind::Bool, json!(true), "file: and images: sources start over at the end"),
        key(w, "stun", Kind::Text, json!(""), "e.g. \"stun:stun.example.org:3478\"; empty: host candidates only"),
        key(w, "ice_hosts", Kind::TextList, json!([]), "addresses to offer as ICE candidates; empty: every interface"),
        key(w, "nat_1to1_ip", Kind::Text, json!(""), "public/host address when running behind NAT or in a container"),
        key(w, "max_viewers", Kind::Int { min: 1, max: 256 }, json!(16), "WHEP viewers at once (1..256)"),
        key("log", "level", Kind::Choice(&["error", "warn", "info", "debug", "trace"]), json!("info"), "error | warn | info | debug | trace; RUST_LOG overrides"),
        key(e, "backend", Kind::Choice(&["auto", "tensorrt", "cuda", "onnxruntime", "tract"]), json!("auto"), "auto | tensorrt | cuda | onnxruntime (CPU) | tract; auto: the first of these that runs here"),
        key(e, "threads", Kind::Int { min: 0, max: 256 }, json!(0), "inference threads; 0: one per core"),
        restart_key(e, "onnxruntime_lib", Kind::Text, json!(""), "path to libonnxruntime.so (or its folder); empty: a pip onnxruntime-gpu, the packaged one, then the system's"),
        key(e, "gpu_device", Kind::Int { min: 0, max: 63 }, json!(0), "CUDA device number for tensorrt and cuda (0..63)"),
        key(e, "frame_on_gpu", Kind::Bool, json!(true), "tensorrt and cuda: the frame goes to the GPU once, each model's pre-processing runs there, into its input in place, and the full-frame overlays are painted there; false: all on the CPU"),
        key(e, "cuda_graphs", Kind::Bool, json!(false), "cuda, with frame_on_gpu: each model runs as a CUDA graph, one launch a run, captured on its first frames (docs/gpu.md: not yet measured on a GPU)"),
        key(e, "fp16", Kind::Bool, json!(true), "tensorrt: build half-precision engines"),
        key(e, "cache_dir", Kind::Text, json!("/var/cache/visiond"), "tensorrt: where built engines and timing caches are kept"),
        key(m, "enabled", Kind::Bool, json!(false), "publish status, results and events to an MQTT broker, and take settings from it"),
        key(m, "url", Kind::BrokerUrl, json!("mqtt://localhost:1883"), "mqtt://host[:port] (port 1883), or mqtts://host[:port] (8883) for TLS"),
        key(m, "ca_file", Kind::Text, json!(""), "mqtts: PEM file of the CA that signed the broker's certificate; empty: the system's CAs"),
        key(m, "client_id", Kind::Text, json!("visiond-<hostname>"), "MQTT client id; <hostname> is this machine's name"),
        key(m, "username", Kind::Text, json!(""), "broker login; empty: none"),
        key(m, "password", Kind::Text, json!(""), "broker password; shown as ***"),
        key(m, "topic", Kind::Topic { empty_ok: false }, json!("visiond/<hostname>"), "prefix of every topic: <topic>/status, /results, /events, /set/<section>/<key>; <hostname> is this machine's name"),
        key(m, "results_hz", Kind::Float { min: 0.0, max: 30.0 }, json!(1.0), "how often <topic>/results is published (0..30 per second); 0: events only"),
        key(m, "retain_status", Kind::Bool, json!(true), "the broker keeps <topic>/status for new subscribers (and the last will's offline)"),
        key(m, "allow_control", Kind::Bool, json!(false), "with server.auth_token set, still take writes on <topic>/set/...: the broker's ACLs decide who may write"),
        key(m, "discovery_prefix", Kind::Topic { empty_ok: true }, json!("homeassistant"), "Home Assistant's MQTT discovery prefix; empty: no discovery"),
        key(o, "codec", Kind::Choice(&["h264"]), json!("h264"), "video codec of the WHEP output"),
        key(o, "bitrate", Kind::Int { min: 100_000, max: 50_000_000 }, json!(4_000_000), "bits per second (100000..50000000)"),
    ];
    let c = "classification";
    keys.extend(model(
        c,
        "efficientnet-lite0",
        vec![
            key(
                c,
                "confidence_threshold",
                UNIT,
                json!(0.01),
                "minimum confidence to show a class (0..1)",
            ),
            key(
                c,
                "output_smoothing",
                UNIT,
                json!(0.0),
                "weight of the previous frames' scores (0..1); 0: none",
            ),
        ],
    ));
    let d = "detection";
    keys.extend(model(
        d,
        "nanodet",
        vec![
            key(
                d,
                "confidence_threshold",
                UNIT,
                json!(0.35),
                "minimum confidence of a box (0..1)",
            ),
            key(
                d,
                "clustering_threshold",
                UNIT,
                json!(0.6),
                "non-maximum suppression IoU (0..1)",
            ),
            key(
                d,
                "overlay_alpha",
                ALPHA,
                json!(120),
                "opacity of the box fill (0..255)",
            ),
            key(
                d,
                "overlay",
                Kind::Flags(&["box", "lines", "labels", "conf"]),
                json!(["box", "labels", "conf"]),
                "any of box, lines, labels, conf; [] draws nothing",
            ),
            key(
                d,
                "tracking_enabled",
                Kind::Bool,
                json!(false),
                "keep a stable id per object across frames (IoU tracker)",
            ),
            key(
                d,
                "tracking_min_frames",
                Kind::Int { min: 0, max: 60 },
                json!(3),
                "frames an object must be seen before it is reported (0..60)",
            ),
            key(
                d,
                "tracking_drop_frames",
                Kind::Int { min: 0, max: 60 },
                json!(15),
                "frames an object may be missing before its track is dropped (0..60)",
            ),
            key(
                d,
                "tracking_overlap_threshold",
                UNIT,
                json!(0.5),
                "IoU that links a box to a track (0..1)",
            ),
        ],
    ));
    let g = "segmentation";
    keys.extend(model(
        g,
        "deeplabv3-mnv2-pascal",
        vec![
            key(
                g,
                "overlay_alpha",
                ALPHA,
                json!(150),
                "opacity of the class colours (0..255)",
            ),
            key(
                g,
                "visualize",
                Kind::Choice(&["overlay", "mask"]),
                json!("overlay"),
                "overlay | mask",
            ),
            key(
                g,
                "filter_mode",
                Kind::Choice(&["linear", "point"]),
                json!("linear"),
                "class map upscaling: linear (bilinear) | point (nearest)",
            ),
        ],
    ));
    let p = "pose";
    keys.extend(model(
        p,
        "movenet-lightning",
        vec![
            key(
                p,
                "confidence_threshold",
                UNIT,
                json!(0.15),
                "minimum keypoint confidence (0..1)",
            ),
            key(
                p,
                "overlay",
                Kind::Flags(&["keypoints", "links", "boxes"]),
                json!(["keypoints", "links"]),
                "any of keypoints, links, boxes",
            ),
        ],
    ));
    let a = "action";
    keys.extend(model(
        a,
        "i3d-kinetics-400",
        vec![
            key(
                a,
                "confidence_threshold",
                UNIT,
                json!(0.01),
                "minimum confidence to show an action (0..1)",
            ),
            key(
                a,
                "skip_frames",
                Kind::Int { min: 0, max: 30 },
                json!(1),
                "frames skipped between the frames the model sees (0..30)",
            ),
        ],
    ));
    let b = "background";
    keys.extend(model(
        b,
        "selfie-segmentation",
        vec![
            key(
                b,
                "mode",
                Kind::Choice(&["black", "color", "blur", "image"]),
                json!("black"),
                "what replaces the background: black | color | blur | image",
            ),
            key(
                b,
                "color",
                Kind::Color,
                json!("#00b140"),
                "replacement colour in color mode",
            ),
            key(
                b,
                "image",
                Kind::Text,
                json!(""),
                "replacement picture (JPEG/PNG path) in image mode",
            ),
        ],
    ));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_passes_its_own_check() {
        for key in SCHEMA.iter() {
            assert_eq!(
                key.check(&key.default),
                Ok(key.default.clone()),
                "{}",
                key.path()
            );
        }
    }

    #[test]
    fn ranges_and_types_are_enforced() {
        let threshold = find("detection", "confidence_threshold").unwrap();
        assert!(threshold
            .check(&json!(1.5))
            .unwrap_err()
            .contains("out of range"));
        assert!(threshold
            .check(&json!("high"))
            .unwrap_err()
            .contains("expected a number"));
        assert_eq!(threshold.check(&json!(1)), Ok(json!(1.0)));
        // Integers are checked as integers: i64::MIN is not rounded through f64 in the error.
        let fps = find("input", "fps").unwrap();
        let error = fps.check(&json!(i64::MIN)).unwrap_err();
        assert!(
            error.starts_with("-9223372036854775808 is out of range 1..120"),
            "{error}"
        );
        let overlay = find("detection", "overlay").unwrap();
        assert!(overlay.check(&json!(["box", "box"])).is_err());
        assert!(overlay.check(&json!(["sparkles"])).is_err());
        let uri = find("input", "uri").unwrap();
        assert!(uri.check(&json!("rtsp://cam/1")).is_ok());
        assert!(uri.check(&json!("ftp://x")).is_err());
        let broker = find("mqtt", "url").unwrap();
        assert!(broker.check(&json!("mqtts://broker.lan:8883")).is_ok());
        assert!(broker.check(&json!("mqtt://[::1]")).is_ok());
        assert_eq!(
            broker_url("mqtt://[::1]"),
            Ok((false, "::1".to_owned(), 1883))
        );
        assert!(broker.check(&json!("http://broker")).is_err());
        assert!(broker.check(&json!("mqtt://broker/path")).is_err());
        let with_login = broker.check(&json!("mqtt://me:s3cret@broker")).unwrap_err();
        assert!(!with_login.contains("s3cret"), "{with_login}");
        let topic = find("mqtt", "topic").unwrap();
        assert!(topic.check(&json!("site/visiond/cam-1")).is_ok());
        for bad in ["", "a/#", "a/+/b", "/a", "a/", "$SYS/x"] {
            assert!(topic.check(&json!(bad)).is_err(), "{bad}");
        }
        let discovery = find("mqtt", "discovery_prefix").unwrap();
        assert!(discovery.check(&json!("")).is_ok());
        assert!(find("background", "color")
            .unwrap()
            .check(&json!("#12345"))
            .is_err());
    }

    #[test]
    fn every_model_section_is_declared() {
        for section in MODEL_SECTIONS {
            assert!(find(section, "enabled").is_some(), "{section}");
        }
    }
}
