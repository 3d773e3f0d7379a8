//! The one writer of settings. File reloads, REST writes and SIGHUP all come here:
//! read -> parse -> validate -> persist (REST) -> diff -> publish. Nothing else changes
//! settings.
//!
//! Two locks with two jobs. Writers (reloads and REST writes) take `writer` in turn and do
//! their file I/O under it. Readers (REST GETs, status, the page) only clone the published
//! `View`, so they never wait for a file read or an fsync.
//!
//! The file is the truth, but only a file read whole and validated: a missing, unreadable,
//! non-regular or newly emptied file is never applied nor merged into. The last good
//! settings stay, the problem is reported, and writes are refused until the file is back.
//! A write merges into the text last verified, and only while the file on disk holds it.

use super::file;
use super::load::{self, Problem};
use super::redact;
use super::schema::SCHEMA;
use super::typed::Settings;
use super::values::Values;
use super::writeback;
use serde::Serialize;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, watch};

/// How long a write waits for the watcher to take in an edit it finds on disk.
const SETTLE: Duration = Duration::from_secs(2);

/// Where a change came from, as reported in events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    File,
    Rest,
    Mqtt,
}

/// What the store tells its subscribers (the page over SSE, the log level, ...). Values in
/// events are redacted: they are for showing.
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
    #[error("the config file changed on disk and has not been reloaded yet; try again")]
    FileChanging,
    #[error("the config file could not be written: {0}")]
    Unwritable(String),
}

impl WriteError {
    /// The `section.key` the error is about, where it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            WriteError::UnknownKey(key) | WriteError::BadValue { key, .. } => Some(key),
            _ => None,
        }
    }
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

/// What readers see, published whole after each change.
struct View {
    /// The effective settings as shown: secrets masked.
    shown: Json,
    status: ConfigStatus,
}

/// What writers keep, under `Store::writer`.
struct Writer {
    /// The text of the file as last read whole and validated, or as last written by us: the
    /// only text a write merges into. A reload of the same text changes nothing, which also
    /// breaks the write -> watch -> reload loop.
    verified: String,
    file_values: Values,
    overrides: Vec<(usize, Json)>,
    effective: Values,
    /// Values at start, to tell which restart-only keys have changed.
    at_start: Values,
    /// Why the file on disk is not the verified text (broken, missing, ...); empty when it is.
    problems: Vec<Problem>,
    loaded_at: SystemTime,
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Signalled after each reload, for writes waiting on an edit found on disk.
    reloaded: Condvar,
    view: Mutex<Arc<View>>,
    snapshot: watch::Sender<Arc<Settings>>,
    events: broadcast::Sender<Event>,
}

impl Store {
    /// Loads the file; a broken or unreadable file at start is an error (there is no last
    /// good config to fall back on). `overrides` are `(section, key, value)` for this run only.
    pub fn open(path: &Path, overrides: &[(&str, &str, Json)]) -> Result<Arc<Store>, Vec<String>> {
        let text = file::read(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let file_values = load::parse(&text).map_err(|problems| located(path, &problems))?;
        let resolved = resolve_overrides(overrides).map_err(|e| vec![e])?;
        let effective = with_overrides(&file_values, &resolved);
        let writer = Writer {
            verified: text,
            file_values,
            overrides: resolved,
            at_start: effective.clone(),
            effective,
            problems: Vec::new(),
            loaded_at: SystemTime::now(),
        };
        let (snapshot, _) = watch::channel(Arc::new(writer.effective.to_settings()));
        let (events, _) = broadcast::channel(256);
        let view = Mutex::new(Arc::new(view_of(path, &writer)));
        Ok(Arc::new(Store {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reloaded: Condvar::new(),
            view,
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

    /// All settings as `{section: {key: value}}`, secrets masked.
    pub fn tree(&self) -> Json {
        self.view().shown.clone()
    }

    /// One setting, secrets masked.
    pub fn get(&self, section: &str, name: &str) -> Option<Json> {
        self.view().shown.get(section)?.get(name).cloned()
    }

    pub fn status(&self) -> ConfigStatus {
        self.view().status.clone()
    }

    fn view(&self) -> Arc<View> {
        lock(&self.view).clone()
    }

    /// Re-reads the file (watcher, SIGHUP). Anything but a valid file keeps the last good
    /// settings and is reported.
    pub fn reload(&self) {
        let mut writer = lock(&self.writer);
        self.take_in(&mut writer, file::read(&self.path));
        self.reloaded.notify_all();
    }

    fn take_in(&self, writer: &mut Writer, read: Result<String, String>) {
        let text = match read {
            Ok(text) => text,
            Err(reason) => return self.set_problems(writer, vec![whole_file(reason)]),
        };
        if text == writer.verified {
            // The verified text is back (after a delete, a directory, a broken edit).
            if !writer.problems.is_empty() {
                self.restore(writer);
            }
            return;
        }
        if text.trim().is_empty() && !writer.verified.trim().is_empty() {
            // An emptied file is an editor's truncation more often than a wish to reset
            // every key; a comment line says the latter.
            let reason = "the file is empty (while truncated for a save?); \
                          to reset every setting, leave a comment in it";
            return self.set_problems(writer, vec![whole_file(reason.into())]);
        }
        match load::parse(&text) {
            Ok(values) => {
                writer.verified = text;
                self.apply(writer, values, &[], Source::File);
            }
            Err(problems) => self.set_problems(writer, problems),
        }
    }

    /// Writes `(section, key, value)` edits to the file and applies them, all or nothing;
    /// `source` (REST or MQTT) is what the change events name.
    pub fn write(
        &self,
        edits: &[(String, String, Json)],
        source: Source,
    ) -> Result<(), WriteError> {
        let writer = lock(&self.writer);
        let mut checked = Vec::with_capacity(edits.len());
        for (section, name, value) in edits {
            let path = format!("{section}.{name}");
            let index =
                Values::index(section, name).ok_or_else(|| WriteError::UnknownKey(path.clone()))?;
            let key = &SCHEMA[index];
            let value = redact::restore(&path, value, writer.effective.get(index));
            let value = key
                .check(&value)
                .map_err(|message| WriteError::BadValue { key: path, message })?;
            checked.push((key, index, value));
        }
        let mut writer = self.until_disk_is_verified(writer)?;
        let edits: Vec<(&str, &str, &Json)> = checked
            .iter()
            .map(|(k, _, v)| (k.section, k.name, v))
            .collect();
        let text = writeback::edit(&writer.verified, &edits).map_err(WriteError::FileBroken)?;
        let values = load::parse(&text).map_err(|problems| {
            let first = &problems[0];
            WriteError::BadValue {
                key: first.key.clone().unwrap_or_default(),
                message: first.message.clone(),
            }
        })?;
        if text != writer.verified {
            file::replace(&self.path, &text).map_err(|e| WriteError::Unwritable(e.to_string()))?;
            writer.verified = text;
        }
        let written: Vec<usize> = checked.iter().map(|(_, i, _)| *i).collect();
        self.apply(&mut writer, values, &written, source);
        Ok(())
    }

    /// `write` for async callers (REST, MQTT): it reads, fsyncs and renames the file, so it
    /// runs off the async workers.
    pub async fn write_async(
        self: Arc<Self>,
        edits: Vec<(String, String, Json)>,
        source: Source,
    ) -> Result<(), WriteError> {
        tokio::task::spawn_blocking(move || self.write(&edits, source))
            .await
            .map_err(|e| WriteError::Unwritable(format!("the write failed: {e}")))?
    }

    /// Waits until the file on disk is the verified text, so a write never lands on a file
    /// mid-save nor overwrites an edit not yet taken in. An edit found on disk is the
    /// watcher's to take in (it knows when the editor is done): this waits for it, a while.
    fn until_disk_is_verified<'a>(
        &'a self,
        mut writer: MutexGuard<'a, Writer>,
    ) -> Result<MutexGuard<'a, Writer>, WriteError> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if !writer.problems.is_empty() {
                return Err(WriteError::FileBroken(
                    located(&self.path, &writer.problems).join("; "),
                ));
            }
            if file::read(&self.path).as_deref() == Ok(writer.verified.as_str()) {
                return Ok(writer);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WriteError::FileChanging);
            }
            writer = self
                .reloaded
                .wait_timeout(writer, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Makes `file_values` current: drops the overrides of keys the file or REST just set,
    /// publishes each changed key and the new snapshot.
    fn apply(&self, writer: &mut Writer, file_values: Values, written: &[usize], source: Source) {
        let old_file = std::mem::replace(&mut writer.file_values, file_values);
        writer.overrides.retain(|(i, _)| {
            !written.contains(i) && old_file.get(*i) == writer.file_values.get(*i)
        });
        let effective = with_overrides(&writer.file_values, &writer.overrides);
        let was_broken = !writer.problems.is_empty();
        writer.problems.clear();
        writer.loaded_at = SystemTime::now();
        let changes: Vec<Event> = writer
            .effective
            .changes(&effective)
            .into_iter()
            .map(|(key, value)| {
                let key = key.path();
                Event::Change {
                    value: redact::value(&key, value),
                    key,
                    source,
                }
            })
            .collect();
        writer.effective = effective;
        self.publish(writer);
        if was_broken {
            self.announce_ok();
        }
        if changes.is_empty() {
            return;
        }
        self.snapshot
            .send_replace(Arc::new(writer.effective.to_settings()));
        for event in changes {
            if let Event::Change { key, value, source } = &event {
                tracing::info!(%key, %value, ?source, "setting changed");
            }
            let _ = self.events.send(event);
        }
    }

    /// The verified text is on disk again: the problems are gone, the settings unchanged.
    fn restore(&self, writer: &mut Writer) {
        writer.problems.clear();
        self.publish(writer);
        self.announce_ok();
    }

    fn announce_ok(&self) {
        tracing::info!(path = %self.path.display(), "config file is valid again");
        let _ = self.events.send(Event::ConfigOk);
    }

    fn set_problems(&self, writer: &mut Writer, problems: Vec<Problem>) {
        if writer.problems == problems {
            return;
        }
        let errors = located(&self.path, &problems);
        for error in &errors {
            tracing::error!("{error} (keeping the last good settings)");
        }
        writer.problems = problems;
        self.publish(writer);
        let _ = self.events.send(Event::ConfigError { errors });
    }

    fn publish(&self, writer: &Writer) {
        *lock(&self.view) = Arc::new(view_of(&self.path, writer));
    }
}

fn view_of(path: &Path, writer: &Writer) -> View {
    let errors = located(path, &writer.problems);
    let status = ConfigStatus {
        path: path.to_owned(),
        loaded_at: humantime::format_rfc3339_seconds(writer.loaded_at).to_string(),
        error: (!errors.is_empty()).then(|| errors.join("\n")),
        errors: writer.problems.clone(),
        restart_required: writer
            .at_start
            .changes(&writer.effective)
            .into_iter()
            .filter(|(key, _)| key.restart)
            .map(|(key, _)| key.path())
            .collect(),
        overrides: writer
            .overrides
            .iter()
            .map(|(i, _)| SCHEMA[*i].path())
            .collect(),
    };
    View {
        shown: redact::tree(writer.effective.tree()),
        status,
    }
}

/// A problem with the file as a whole (it is missing, a FIFO, too large, ...).
fn whole_file(message: String) -> Problem {
    Problem {
        line: 1,
        column: 1,
        key: None,
        message,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every update is a swap).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
