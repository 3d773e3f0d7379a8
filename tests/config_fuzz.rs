//! Generated edits of the config file, as editors and careless users make them: good and bad
//! values, unknown keys, syntax errors, truncations, empty files, deletes, directories,
//! FIFOs and huge files, saved by rename or in place, sometimes several before the watcher
//! catches up. After each, visiond must agree with its own `check-config`: a valid file is
//! applied exactly (absent keys at their defaults), anything else is reported with the
//! checker's own words while the last good settings stay.
//!
//! The seed is printed; `CONFIG_FUZZ_SEED=N` replays a run.

mod common;

use common::{save_by_rename, Server, SHIPPED_CONFIG};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const STEPS: usize = 60;
const SETTLED: Duration = Duration::from_secs(10);

/// The keys the fuzzer edits, with a good and a bad value maker each.
const KEYS: &[(&str, &str, Kind)] = &[
    ("server", "title", Kind::Text),
    ("input", "fps", Kind::Int(1, 120)),
    ("webrtc", "max_viewers", Kind::Int(1, 256)),
    ("output", "bitrate", Kind::Int(100_000, 50_000_000)),
    ("detection", "confidence_threshold", Kind::Unit),
    ("pose", "confidence_threshold", Kind::Unit),
    ("detection", "overlay_alpha", Kind::Int(0, 255)),
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int(i64, i64),
    /// A float in 0..1.
    Unit,
}

/// xorshift64*: reproducible from the printed seed, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn good_value(kind: Kind, rng: &mut Rng) -> toml_edit::Value {
    match kind {
        Kind::Text => format!("title {}", rng.below(1000)).into(),
        Kind::Int(min, max) => (min + (rng.next() % (max - min + 1) as u64) as i64).into(),
        Kind::Unit => (rng.below(101) as f64 / 100.0).into(),
    }
}

fn bad_value(kind: Kind, rng: &mut Rng) -> toml_edit::Value {
    match (kind, rng.below(2)) {
        (Kind::Text, _) => (rng.below(9) as i64).into(),
        (Kind::Int(_, max), 0) => (max + 1 + rng.below(1000) as i64).into(),
        (Kind::Unit, 0) => (1.5 + rng.below(10) as f64).into(),
        _ => "fast".into(),
    }
}

/// What the fuzzer does to the file next.
enum Action {
    Text(String),
    Delete,
    Directory,
    Fifo,
    Huge,
}

/// The next action; `good_only`: a valid edit of one key.
fn next_action(current: &str, rng: &mut Rng, good_only: bool) -> Action {
    let mut doc: toml_edit::DocumentMut = match current.parse() {
        Ok(doc) => doc,
        Err(_) => SHIPPED_CONFIG.parse().unwrap(),
    };
    let (section, name, kind) = KEYS[rng.below(KEYS.len())];
    match if good_only { 0 } else { rng.below(20) } {
        0..=8 => doc[section][name] = toml_edit::Item::Value(good_value(kind, rng)),
        9..=11 => doc[section][name] = toml_edit::Item::Value(bad_value(kind, rng)),
        12 => doc[section]["bogus_key"] = toml_edit::value(1),
        13 => {
            let text = doc.to_string();
            // An empty file (a step before emptied it) truncates to itself.
            let at = rng.below(text.len().max(1)).min(text.len());
            let cut = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap();
            return Action::Text(text[..cut].to_owned());
        }
        14 => return Action::Text(format!("{}\n[input\n", doc)),
        15 => return Action::Text(String::new()),
        16 => return Action::Delete,
        17 => return Action::Directory,
        18 => return Action::Fifo,
        _ => return Action::Huge,
    }
    Action::Text(doc.to_string())
}

/// Clears what the last action left at the path (a directory, a FIFO, a link).
fn clear(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

fn write(path: &Path, text: &str, rng: &mut Rng) {
    if rng.chance(50) || !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        clear(path);
        save_by_rename(path, text);
    } else {
        std::fs::write(path, text).unwrap();
    }
}

/// visiond's own checker on a text: `Ok` or its lines.
fn check_config(dir: &Path, path_shown: &Path, text: &str) -> Result<(), String> {
    let probe = dir.join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let file = probe.join(path_shown.file_name().unwrap());
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_visiond"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(stdout.trim_end().replace(
            &file.display().to_string(),
            &path_shown.display().to_string(),
        ))
    }
}

/// The fuzzed keys' values a valid text gives: its own, or the defaults.
fn values_of(text: &str) -> Value {
    let file: toml::Table = text.parse().unwrap();
    let defaults: toml::Table = SHIPPED_CONFIG.parse().unwrap();
    let mut out = serde_json::Map::new();
    for (section, name, _) in KEYS {
        let value = file
            .get(*section)
            .and_then(|s| s.get(*name))
            .unwrap_or(&defaults[*section][*name]);
        out.insert(
            format!("{section}.{name}"),
            serde_json::to_value(value).unwrap(),
        );
    }
    Value::Object(out)
}

fn served_values(server: &Server) -> Value {
    let config = server.get_json("/api/v1/config");
    let mut out = serde_json::Map::new();
    for (section, name, _) in KEYS {
        out.insert(format!("{section}.{name}"), config[section][name].clone());
    }
    Value::Object(out)
}

/// What visiond should show once it has caught up.
#[derive(Debug, PartialEq)]
struct Expected {
    values: Value,
    /// `None`: no error; `Some(exact)`: the checker's text; phrases for non-files.
    error: Option<String>,
    exact: bool,
}

#[test]
fn generated_edits_are_applied_exactly_or_refused_whole() {
    let seed = std::env::var("CONFIG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("CONFIG_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let server = Server::start();
    let path = server.config.clone();
    let mut verified = server.file();
    let mut on_disk = verified.clone();
    let mut expected = Expected {
        values: values_of(&verified),
        error: None,
        exact: true,
    };
    for step in 0..STEPS {
        // Now and then a good save follows another before the watcher catches up: the first
        // may never be seen, the last must be applied.
        let burst = if rng.chance(20) { 2 } else { 1 };
        for save in 0..burst {
            clear_if_not_a_file(&path);
            expected = match next_action(&on_disk, &mut rng, save == 1) {
                Action::Text(text) => {
                    write(&path, &text, &mut rng);
                    on_disk = text.clone();
                    match check_config(server.dir.path(), &path, &text) {
                        Err(lines) => Expected {
                            values: values_of(&verified),
                            error: Some(lines),
                            exact: true,
                        },
                        Ok(()) if text.trim().is_empty() && !verified.trim().is_empty() => {
                            Expected {
                                values: values_of(&verified),
                                error: Some("the file is empty".into()),
                                exact: false,
                            }
                        }
                        Ok(()) => {
                            verified = text;
                            Expected {
                                values: values_of(&verified),
                                error: None,
                                exact: true,
                            }
                        }
                    }
                }
                other => {
                    let phrase = make_non_file(&path, &other, server.dir.path());
                    Expected {
                        values: values_of(&verified),
                        error: Some(phrase.into()),
                        exact: false,
                    }
                }
            };
        }
        wait_until_shown(&server, &expected, step, seed);
    }
}

fn clear_if_not_a_file(path: &Path) {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        clear(path);
    }
}

/// Puts a non-file at the path (or none); returns what the error must say.
fn make_non_file(path: &Path, action: &Action, dir: &Path) -> &'static str {
    clear(path);
    match action {
        Action::Delete => "the file is missing",
        Action::Directory => {
            std::fs::create_dir(path).unwrap();
            "is a directory"
        }
        Action::Fifo => {
            let fifo = dir.join("fifo");
            assert!(Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success());
            std::fs::rename(&fifo, path).unwrap();
            "not a regular file"
        }
        Action::Huge => {
            std::fs::write(path, vec![b'#'; 1024 * 1024 + 1]).unwrap();
            "over 1024 KiB"
        }
        Action::Text(_) => unreachable!("texts are written, not made"),
    }
}

fn wait_until_shown(server: &Server, expected: &Expected, step: usize, seed: u64) {
    let deadline = Instant::now() + SETTLED;
    loop {
        let error = server.get_json("/api/v1/status")["config"]["error"].clone();
        let error_ok = match (&expected.error, error.as_str()) {
            (None, None) => true,
            (Some(want), Some(got)) if expected.exact => got == want,
            (Some(want), Some(got)) => got.contains(want.as_str()),
            _ => false,
        };
        let values = served_values(server);
        if error_ok && values == expected.values {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "step {step} (CONFIG_FUZZ_SEED={seed}): expected {expected:?}, \
             visiond shows error {error} and {values}; file:\n{}",
            std::fs::read_to_string(&server.config).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_fuzzers_model_of_defaults_is_visionds() {
    // The test's idea of "absent keys take their defaults" must be visiond's own.
    let only_listen = |text: String| {
        let listen = text.lines().find(|l| l.starts_with("listen")).unwrap();
        format!("# nothing else set\n[server]\n{listen}\n")
    };
    let server = Server::start_with(only_listen, &[]);
    let defaults = values_of(SHIPPED_CONFIG);
    assert_eq!(served_values(&server), defaults);
    assert_eq!(defaults["input.fps"], json!(30));
}
