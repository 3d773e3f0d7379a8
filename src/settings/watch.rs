//! Watches the config file and reloads it once an editor is done with it.
//!
//! It watches the folder, not the file: editors that save by writing a new file and renaming
//! it over the old one (vim, sed -i) replace the inode a file watch would be attached to.
//!
//! A file being written in place is not read until its writer closes it: a save that pauses
//! half way would otherwise apply its first half. A rename into place, a delete or a close
//! ends a save; a write or a create starts one. A writer that keeps the file open without
//! writing for `OPEN_WRITER_GRACE` is taken as done (some tools never close).

use super::store::Store;
use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quiet time after a save ends before reloading: saves come in several steps.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long a file written but not closed waits before it is read anyway.
const OPEN_WRITER_GRACE: Duration = Duration::from_secs(3);

/// What an event says of the save in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Bytes are going in (or a new file was created): wait for the writer to close it.
    Writing,
    /// The file is complete, renamed in, removed, or its metadata changed.
    Done,
}

fn step(kind: &EventKind) -> Option<Step> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Step::Done),
        // Our own reads open and close the file: not a change.
        EventKind::Access(_) => None,
        // A directory put at the path is complete as it is (and reported as no file).
        EventKind::Create(CreateKind::Folder) => Some(Step::Done),
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
            Some(Step::Writing)
        }
        _ => Some(Step::Done),
    }
}

/// Starts watching; the returned watcher stops when dropped.
pub fn spawn(store: Arc<Store>) -> notify::Result<notify::RecommendedWatcher> {
    let path = store.path().to_owned();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    let name = path.file_name().map(|n| n.to_owned());
    let (tx, rx) = mpsc::channel::<Step>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let step = match &event {
            Ok(event) if event.need_rescan() => Some(Step::Done),
            Ok(event) if event.paths.iter().any(|p| p.file_name() == name.as_deref()) => {
                step(&event.kind)
            }
            Ok(_) => None,
            Err(_) => Some(Step::Done),
        };
        if let Some(step) = step {
            let _ = tx.send(step);
        }
    })?;
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || reload_after_saves(&store, &rx))
        .expect("spawn config watcher thread");
    Ok(watcher)
}

/// Reloads once per save, after its last step plus the quiet time that step asks for.
fn reload_after_saves(store: &Store, steps: &mpsc::Receiver<Step>) {
    let quiet = |step: Step| match step {
        Step::Writing => OPEN_WRITER_GRACE,
        Step::Done => DEBOUNCE,
    };
    while let Ok(first) = steps.recv() {
        let mut due = Instant::now() + quiet(first);
        loop {
            match steps.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(step) => due = Instant::now() + quiet(step),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        store.reload();
    }
}
