//! Watches the config file and reloads it, debounced.
//!
//! It watches the folder, not the file: editors that save by writing a new file and renaming
//! it over the old one (vim, sed -i) replace the inode a file watch would be attached to.

use super::store::Store;
use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Quiet time after the last event before reloading: editors write in several steps.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Starts watching; the returned watcher stops when dropped.
pub fn spawn(store: Arc<Store>) -> notify::Result<notify::RecommendedWatcher> {
    let path = store.path().to_owned();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => Path::new(".").to_owned(),
    };
    let name = path.file_name().map(|n| n.to_owned());
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => {
                event.need_rescan() || event.paths.iter().any(|p| p.file_name() == name.as_deref())
            }
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                while rx.recv_timeout(DEBOUNCE).is_ok() {}
                store.reload();
            }
        })
        .expect("spawn config watcher thread");
    Ok(watcher)
}
