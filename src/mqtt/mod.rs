//! MQTT (`[mqtt]`): visiond's status, results and events published to a broker, and its
//! settings taken from there, through the same store as REST. All of it runs on tokio and
//! only reads the pipeline's latest results: a broker that is down or slow never slows the
//! pipeline, it only fills a bounded queue.

mod control;
mod discovery;
mod events;
mod options;
mod outbox;
mod publish;
mod session;
mod state;
mod topics;

pub use state::State;

use crate::pipeline::status::Shared;
use crate::settings::Store;
use crate::vision::catalog::Catalog;
use session::Session;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the MQTT side reads (settings, pipeline results, catalog) and reports to (`state`).
#[derive(Clone)]
pub struct Parts {
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub catalog: Option<Arc<Catalog>>,
    pub state: Arc<State>,
}

/// The running MQTT side; `stop` ends it cleanly.
pub struct Mqtt {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Follows `[mqtt]`: a session while enabled, a new one whenever the section changes.
pub fn spawn(parts: Parts) -> Mqtt {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(follow_settings(parts, stopped));
    Mqtt { stop, task }
}

impl Mqtt {
    /// Leaves `offline` on the status topic and disconnects.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn follow_settings(parts: Parts, mut stop: oneshot::Receiver<()>) {
    let mut settings = parts.store.watch();
    loop {
        let current = settings.borrow_and_update().mqtt.clone();
        let session = current
            .enabled
            .then(|| Session::start(parts.clone(), current.clone()));
        let stopping = loop {
            tokio::select! {
                _ = &mut stop => break true,
                changed = settings.changed() => {
                    if changed.is_err() {
                        break true;
                    }
                    if settings.borrow().mqtt != current {
                        break false;
                    }
                }
            }
        };
        if let Some(session) = session {
            session.end().await;
        }
        if stopping {
            return;
        }
    }
}
