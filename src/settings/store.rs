//! The one writer of settings. File reloads, REST writes and SIGHUP all come here:
//! parse -> validate -> persist (REST) -> diff -> publish. Nothing else changes settings.

use super::load::{self, Problem};
use super::schema::{self, SCHEMA};
use super::typed::Settings;
use super::values::Values;
use super::writeback;
use crate::media::source::redact;
use serde::Serialize;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::{broadcast, watch};

/// Where a change came from, as reported in events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Rest,
}

/// What the store tells its subscribers (the page over SSE, the log level, ...).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Change {
        key: String,
        value: Json,
        source: Source,
    },
    ConfigError {
        errors: Vec<String>,
    },
    ConfigOk,
}

/// Why a write was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no such property `{0}`")]
    UnknownKey(String),
    #[error("`{key}`: {message}")]
    BadValue { key: String, message: String },
    #[error("the config file is broken, so the change could not be merged into it: {0}")]
    FileBroken(String),
    #[error("the config file could not be written: {0}")]
    Unwritable(String),
}

/// The config's state for `/api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigStatus {
    pub path: PathBuf,
    pub loaded_at: String,
    /// The file's problems, `PATH:LINE:COL: message` each, while it is broken.
    pub error: Option<String>,
    pub errors: Vec<Problem>,
    /// Keys changed since start that take effect only on restart.
    pub restart_required: Vec<String>,
    /// Keys set by command-line flags for this run, over the file.
    pub overrides: Vec<String>,
}

struct Inner {
    /// The file's text as last read or written: a file event with the same text is our own
    /// write (or a touch) and changes nothing, which breaks the write -> watch -> reload loop.
    text: String,
    file_values: Values,
    overrides: Vec<(usize, Json)>,
    effective: Values,
    /// Values at start, to tell which restart-only keys have changed.
    at_start: Values,
    problems: Vec<Problem>,
    loaded_at: SystemTime,
}

pub struct Store {
    path: PathBuf,
    inner: Mutex<Inner>,
    snapshot: watch::Sender<Arc<Settings>>,
    events: broadcast::Sender<Event>,
}

impl Store {
    /// Loads the file; a broken or unreadable file at start is an error (there is no last
    /// good config to fall back on). `overrides` are `(section, key, value)` for this run only.
    pub fn open(path: &Path, overrides: &[(&str, &str, Json)]) -> Result<Arc<Store>, Vec<String>> {
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let file_values = load::parse(&text).map_err(|problems| located(path, &problems))?;
        let mut resolved = Vec::new();
        for (section, name, value) in overrides {
            let index = Values::index(section, name)
                .ok_or_else(|| vec![format!("unknown setting {section}.{name}")])?;
            let value = SCHEMA[index]
                .check(value)
                .map_err(|e| vec![format!("--{section}: {e}")])?;
            resolved.push((index, value));
        }
        let effective = with_overrides(&file_values, &resolved);
        let (snapshot, _) = watch::channel(Arc::new(effective.to_settings()));
        let (events, _) = broadcast::channel(256);
        Ok(Arc::new(Store {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                text,
                file_values,
                overrides: resolved,
                at_start: effective.clone(),
                effective,
                problems: Vec::new(),
                loaded_at: SystemTime::now(),
            }),
            snapshot,
            events,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest settings; cheap to call every frame.
    pub fn settings(&self) -> Arc<Settings> {
        self.snapshot.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<Settings>> {
        self.snapshot.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// All settings as `{section: {key: value}}`.
    pub fn tree(&self) -> Json {
        self.lock().effective.tree()
    }

    pub fn get(&self, section: &str, name: &str) -> Option<Json> {
        let index = Values::index(section, name)?;
        Some(self.lock().effective.get(index).clone())
    }

    pub fn status(&self) -> ConfigStatus {
        let inner = self.lock();
        let errors = located(&self.path, &inner.problems);
        ConfigStatus {
            path: self.path.clone(),
            loaded_at: humantime::format_rfc3339_seconds(inner.loaded_at).to_string(),
            error: (!errors.is_empty()).then(|| errors.join("\n")),
            errors: inner.problems.clone(),
            restart_required: inner
                .at_start
                .changes(&inner.effective)
                .into_iter()
                .filter(|(key, _)| key.restart)
                .map(|(key, _)| key.path())
                .collect(),
            overrides: inner
                .overrides
                .iter()
                .map(|(i, _)| SCHEMA[*i].path())
                .collect(),
        }
    }

    /// Re-reads the file (watcher, SIGHUP). A broken file keeps the last good settings.
    pub fn reload(&self) {
        let mut inner = self.lock();
        match std::fs::read_to_string(&self.path) {
            Ok(text) => self.reload_text(&mut inner, text),
            Err(e) => {
                let problem = Problem {
                    line: 1,
                    column: 1,
                    key: None,
                    message: format!("cannot read the file: {e}"),
                };
                self.set_problems(&mut inner, vec![problem]);
            }
        }
    }

    fn reload_text(&self, inner: &mut Inner, text: String) {
        if text == inner.text {
            return;
        }
        match load::parse(&text) {
            Ok(values) => {
                inner.text = text;
                self.apply(inner, values, &[], Source::File);
            }
            Err(problems) => {
                inner.text = text;
                self.set_problems(inner, problems);
            }
        }
    }

    /// Writes `(section, key, value)` edits to the file and applies them, all or nothing.
    pub fn write(&self, edits: &[(String, String, Json)]) -> Result<(), WriteError> {
        let mut checked = Vec::with_capacity(edits.len());
        for (section, name, value) in edits {
            let path = format!("{section}.{name}");
            let key =
                schema::find(section, name).ok_or_else(|| WriteError::UnknownKey(path.clone()))?;
            let value = key
                .check(value)
                .map_err(|message| WriteError::BadValue { key: path, message })?;
            checked.push((key, value));
        }
        let mut inner = self.lock();
        // An editor may have saved since the last event: take its text in first, so this
        // write lands on top of it instead of overwriting it.
        let disk = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(WriteError::Unwritable(e.to_string())),
        };
        self.reload_text(&mut inner, disk);
        if !inner.problems.is_empty() {
            return Err(WriteError::FileBroken(
                located(&self.path, &inner.problems).join("; "),
            ));
        }
        let edits: Vec<(&str, &str, &Json)> = checked
            .iter()
            .map(|(k, v)| (k.section, k.name, v))
            .collect();
        let text = writeback::edit(&inner.text, &edits).map_err(WriteError::FileBroken)?;
        let values = load::parse(&text).map_err(|problems| {
            let first = &problems[0];
            WriteError::BadValue {
                key: first.key.clone().unwrap_or_default(),
                message: first.message.clone(),
            }
        })?;
        if text != inner.text {
            writeback::replace_file(&self.path, &text)
                .map_err(|e| WriteError::Unwritable(e.to_string()))?;
            inner.text = text;
        }
        let written: Vec<usize> = checked
            .iter()
            .filter_map(|(k, _)| Values::index(k.section, k.name))
            .collect();
        self.apply(&mut inner, values, &written, Source::Rest);
        Ok(())
    }

    /// Makes `file_values` current: drops the overrides of keys the file or REST just set,
    /// publishes each changed key and the new snapshot.
    fn apply(&self, inner: &mut Inner, file_values: Values, written: &[usize], source: Source) {
        let old_file = std::mem::replace(&mut inner.file_values, file_values);
        inner
            .overrides
            .retain(|(i, _)| !written.contains(i) && old_file.get(*i) == inner.file_values.get(*i));
        let effective = with_overrides(&inner.file_values, &inner.overrides);
        let was_broken = !inner.problems.is_empty();
        inner.problems.clear();
        inner.loaded_at = SystemTime::now();
        let changes: Vec<Event> = inner
            .effective
            .changes(&effective)
            .into_iter()
            .map(|(key, value)| Event::Change {
                key: key.path(),
                value: value.clone(),
                source,
            })
            .collect();
        inner.effective = effective;
        if was_broken {
            tracing::info!(path = %self.path.display(), "config file is valid again");
            let _ = self.events.send(Event::ConfigOk);
        }
        if changes.is_empty() {
            return;
        }
        self.snapshot
            .send_replace(Arc::new(inner.effective.to_settings()));
        for event in changes {
            if let Event::Change { key, value, source } = &event {
                // A camera URI may hold a password: log it without.
                let value = match value.as_str() {
                    Some(uri) if key == "input.uri" => redact(uri).into(),
                    _ => value.clone(),
                };
                tracing::info!(%key, %value, ?source, "setting changed");
            }
            let _ = self.events.send(event);
        }
    }

    fn set_problems(&self, inner: &mut Inner, problems: Vec<Problem>) {
        let errors = located(&self.path, &problems);
        for error in &errors {
            tracing::error!("{error} (keeping the last good settings)");
        }
        inner.problems = problems;
        let _ = self.events.send(Event::ConfigError { errors });
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is a swap).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Checks command-line overrides against the schema.
pub fn resolve_overrides(overrides: &[(&str, &str, Json)]) -> Result<Vec<(usize, Json)>, String> {
    overrides
        .iter()
        .map(|(section, name, value)| {
            let index = Values::index(section, name)
                .ok_or_else(|| format!("unknown setting {section}.{name}"))?;
            let value = SCHEMA[index]
                .check(value)
                .map_err(|e| format!("--{section}: {e}"))?;
            Ok((index, value))
        })
        .collect()
}

pub fn with_overrides(file_values: &Values, overrides: &[(usize, Json)]) -> Values {
    let mut values = file_values.clone();
    for (index, value) in overrides {
        values.set(*index, value.clone());
    }
    values
}

/// `PATH:LINE:COL: message` for each problem, like compilers and `nginx -t`.
pub fn located(path: &Path, problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| format!("{}:{p}", path.display()))
        .collect()
}
