//! Wiring for `visiond run`: settings store, file watcher, pipeline thread, H.264 encoder
//! thread, web server (with WebRTC signaling), MQTT, signals, and the shutdown order.

use crate::pipeline::{self, status::Shared};
use crate::settings::{self, Store};
use crate::vision::catalog::Catalog;
use crate::{logging, mqtt, systemd, web, webrtc};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// How long open connections (event streams never end by themselves) may delay exit.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1200);

pub fn run(config: &Path, overrides: &[(&str, &str, Json)]) -> anyhow::Result<()> {
    let store = match Store::open(config, overrides) {
        Ok(store) => store,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            anyhow::bail!("cannot start with this config file");
        }
    };
    let log_level = logging::init(&store.settings().log.level);
    tracing::info!(config = %config.display(), "visiond {} starting", env!("CARGO_PKG_VERSION"));
    // Before any write of ours: the temp files of writes a kill interrupted.
    for leftover in settings::file::sweep_leftovers(config) {
        tracing::info!(
            "removed {}, left by a write that was interrupted",
            leftover.display()
        );
    }

    let catalog = Catalog::locate().map_err(|e| format!("{e:#}"));
    match &catalog {
        Ok(catalog) => tracing::info!(models = %catalog.dir.display(), "model catalog"),
        Err(e) => tracing::error!("model catalog: {e}"),
    }
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = pipeline::spawn(store.clone(), catalog.clone(), shared.clone(), stop.clone())?;
    let _watcher = settings::watch::spawn(store.clone())
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", config.display()))?;

    let hub = webrtc::Hub::new(store.clone(), shared.clone());
    let encoder = webrtc::spawn_encoder(
        hub.output.clone(),
        shared.clone(),
        store.clone(),
        stop.clone(),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        follow_log_level(&store, log_level);
        let mqtt_state = Arc::new(mqtt::State::default());
        let mqtt = mqtt::spawn(mqtt::Parts {
            store: store.clone(),
            shared: shared.clone(),
            catalog: catalog.clone().ok().map(Arc::new),
            state: mqtt_state.clone(),
        });
        let ctx = web::Context::new(store.clone(), shared.clone(), catalog.ok(), hub, mqtt_state)?;
        let addr = store.settings().server.listen.parse()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(web::serve(ctx, addr, async {
            let _ = stop_rx.await;
        }));
        tokio::select! {
            result = server => result??,
            () = until_stopped(store.clone()) => {
                let _ = stop_tx.send(());
            }
        }
        mqtt.stop().await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    stop.store(true, Ordering::Relaxed);
    let _ = pipeline.join();
    let _ = encoder.join();
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT, reloading the file on each SIGHUP meanwhile.
async fn until_stopped(store: Arc<Store>) {
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading {}", store.path().display());
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping");
    systemd::notify("STOPPING=1");
}

fn follow_log_level(store: &Store, log_level: logging::LogLevel) {
    let mut settings = store.watch();
    tokio::spawn(async move {
        while settings.changed().await.is_ok() {
            let level = settings.borrow_and_update().log.level.clone();
            log_level.set(&level);
        }
    });
}
