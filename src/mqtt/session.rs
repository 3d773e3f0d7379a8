//! One `[mqtt]` section's connection: connects, and reconnects with backoff, publishes
//! status, results, events and discovery through the outbox, and hands control writes on.
//! It ends when `[mqtt]` changes or visiond stops, leaving `offline` on its status topic.

use super::control;
use super::options::{self, OFFLINE};
use super::outbox::{Outbox, CAPACITY};
use super::publish::{send_all, Publisher, Resend};
use super::state::Connection;
use super::topics::Topics;
use super::Parts;
use crate::settings::typed::Mqtt;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, timeout, Interval, MissedTickBehavior};

/// Reconnect backoff, doubling from the first to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(15);
/// How often `<topic>/status` (FPS, models, input) is refreshed.
const STATUS_PERIOD: Duration = Duration::from_secs(5);
/// Requests between the client handle and its event loop: the outbox is the real buffer.
const CLIENT_QUEUE: usize = 16;
/// Control writes waiting for the store; more are refused with a warning.
const CONTROL_QUEUE: usize = 64;
/// How long a stopping session may take to say goodbye.
const GOODBYE: Duration = Duration::from_secs(1);

pub struct Session {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Session {
    pub fn start(parts: Parts, settings: Mqtt) -> Session {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(parts, settings, stopped));
        Session { stop, task }
    }

    /// Says goodbye to the broker (offline status, disconnect) and ends.
    pub async fn end(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if timeout(GOODBYE * 2, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn run(parts: Parts, settings: Mqtt, mut stop: oneshot::Receiver<()>) {
    let topics = Topics::new(&settings.topic);
    parts.state.start(&settings.url, &topics.base);
    let options = match options::build(&settings, &topics) {
        Ok(options) => options,
        Err(reason) => {
            tracing::error!("mqtt: {reason}");
            parts.state.set(Connection::Error, Some(reason));
            let _ = stop.await;
            parts.state.set(Connection::Disabled, None);
            return;
        }
    };
    tracing::info!(broker = %settings.url, topic = %topics.base, "mqtt: connecting");
    let (client, eventloop) = AsyncClient::new(options, CLIENT_QUEUE);
    let outbox = Arc::new(Outbox::new(CAPACITY));
    let (connected, connected_rx) = watch::channel(false);
    let up = Arc::new(Notify::new());
    let (writes, writes_rx) = mpsc::channel(CONTROL_QUEUE);
    let mut link = tokio::spawn(drive(
        eventloop,
        Link {
            client: client.clone(),
            parts: parts.clone(),
            broker: settings.url.clone(),
            subscription: topics.set_filter(),
            connected,
            up: up.clone(),
            writes,
        },
    ));
    let sender = tokio::spawn(send_all(
        client.clone(),
        outbox.clone(),
        connected_rx.clone(),
    ));
    let controller = tokio::spawn(control::serve(
        parts.store.clone(),
        topics.clone(),
        writes_rx,
        outbox.clone(),
    ));
    let mut publisher = Publisher::new(
        parts.clone(),
        topics.clone(),
        outbox,
        settings.retain_status,
    );
    let mut results = parts.shared.watch_results();
    let mut results_tick = (settings.results_hz > 0.0)
        .then(|| ticker(Duration::from_secs_f64(1.0 / settings.results_hz)));
    // The first status goes out with the connection (`announce_all`).
    let mut status_tick = ticker(STATUS_PERIOD);
    status_tick.reset();
    let mut changes = parts.store.subscribe();
    let mut settings_rx = parts.store.watch();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = up.notified() => publisher.announce_all(),
            () = tick(&mut results_tick) => publisher.results(),
            Ok(()) = results.changed() => {
                let latest = results.borrow_and_update().clone();
                publisher.scene(&latest);
            }
            _ = status_tick.tick() => publisher.status(),
            change = changes.recv() => match change {
                Ok(event) => publisher.settings_event(&event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("mqtt: {n} config events missed");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Ok(()) = settings_rx.changed() => {
                settings_rx.borrow_and_update();
                publisher.announce_entities(Resend::Changed);
            }
        }
    }
    sender.abort();
    controller.abort();
    if *connected_rx.borrow() {
        // The broker's last will is for deaths; a stop says offline itself.
        let goodbye = async {
            let offline = client.publish(
                topics.status(),
                QoS::AtLeastOnce,
                settings.retain_status,
                OFFLINE,
            );
            let _ = offline.await;
            let _ = client.disconnect().await;
            let _ = (&mut link).await;
        };
        if timeout(GOODBYE, goodbye).await.is_ok() {
            tracing::info!(broker = %settings.url, "mqtt: disconnected");
        }
    }
    link.abort();
    parts.state.set(Connection::Disabled, None);
}

/// What the connection's driver reports to and hands on.
struct Link {
    client: AsyncClient,
    parts: Parts,
    broker: String,
    subscription: String,
    connected: watch::Sender<bool>,
    /// Told at each (re)connection, so that the session publishes what the broker should hold.
    up: Arc<Notify>,
    writes: mpsc::Sender<Publish>,
}

/// Polls the client's event loop for good, in a task of its own: a poll cancelled by other
/// work would restart a slow connect (a TLS handshake on a loaded machine) again and again.
/// Connects, reconnects with backoff, and reports the state. Ends after a disconnect.
async fn drive(mut eventloop: EventLoop, link: Link) {
    let mut retry = FIRST_RETRY;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(broker = %link.broker, "mqtt: connected");
                retry = FIRST_RETRY;
                link.parts.state.set(Connection::Connected, None);
                // Queued before the first publish of this connection (the sender waits for
                // `connected`): whoever sees the online status can write. Should the queue
                // be full of the last connection's messages, it waits its turn there.
                let filter = link.subscription.clone();
                if link
                    .client
                    .try_subscribe(&filter, QoS::AtLeastOnce)
                    .is_err()
                {
                    let client = link.client.clone();
                    tokio::spawn(async move { client.subscribe(filter, QoS::AtLeastOnce).await });
                }
                link.connected.send_replace(true);
                link.up.notify_one();
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => take_write(&link.writes, publish),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                link.connected.send_replace(false);
                let reason = error.to_string();
                tracing::warn!(broker = %link.broker, "mqtt: {reason}; retrying in {retry:?}");
                link.parts.state.set(Connection::Error, Some(reason));
                sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
            }
        }
    }
}

/// Control writes are only live messages: a retained one would replay an old write over
/// the file at every reconnect.
fn take_write(writes: &mpsc::Sender<Publish>, publish: Publish) {
    if publish.retain {
        tracing::warn!(topic = %publish.topic, "mqtt: ignoring a retained control write");
    } else if writes.try_send(publish).is_err() {
        tracing::warn!("mqtt: too many control writes waiting; one is dropped");
    }
}

fn ticker(period: Duration) -> Interval {
    let mut ticker = interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The next tick, or never for `None` (results at 0 Hz).
async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}
