//! WebRTC: WHEP viewers of the annotated output, and one WHIP publisher feeding the `webrtc`
//! input. The HTTP handler only negotiates; each peer then runs as one task that owns its
//! connection and closes it (its sockets and tasks with it) on DELETE, ICE failure or close.

mod encoder;
mod offer;
pub(crate) mod peer;
pub(crate) mod whep;
pub(crate) mod whip;

pub use encoder::{spawn as spawn_encoder, H264};
pub use peer::OfferError;

use crate::pipeline::status::Shared;
use crate::settings::Store;
use bytes::Bytes;
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Notify};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

/// Encoded units a viewer may fall behind by before it skips to the next keyframe.
const UNITS_BUFFERED: usize = 16;
/// Latency samples kept for the status figures.
const LATENCY_SAMPLES: usize = 300;

/// One encoded frame: H.264 Annex B, every NAL unit of the picture.
pub struct AccessUnit {
    pub data: Bytes,
    pub keyframe: bool,
    /// Time since the previous unit, for the RTP clock.
    pub duration: Duration,
    /// When the frame's source data arrived by WHIP, if it did.
    pub received: Option<Instant>,
}

/// Between the encoder thread and the viewers.
pub struct Output {
    units: broadcast::Sender<Arc<AccessUnit>>,
    keyframe_wanted: AtomicBool,
    watchers: AtomicUsize,
    latency: Mutex<VecDeque<f64>>,
}

impl Output {
    fn new() -> Output {
        Output {
            units: broadcast::channel(UNITS_BUFFERED).0,
            keyframe_wanted: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
            latency: Mutex::new(VecDeque::new()),
        }
    }

    /// Viewers receiving now; the encoder rests while there are none.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    fn send(&self, unit: AccessUnit) {
        let _ = self.units.send(Arc::new(unit)); // no receiver is not an error
    }

    fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    fn record_latency(&self, received: Instant) {
        let mut samples = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == LATENCY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(received.elapsed().as_secs_f64() * 1000.0);
    }

    /// Mean and largest of the recent WHIP-arrival-to-WHEP-send times, in milliseconds.
    fn latency(&self) -> Json {
        let samples = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if samples.is_empty() {
            return Json::Null;
        }
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let max = samples.iter().copied().fold(0.0, f64::max);
        json!({"mean_ms": mean, "max_ms": max, "samples": samples.len()})
    }
}

/// Counts a viewer as receiving while it lives.
struct Watching<'a>(&'a Output);

impl<'a> Watching<'a> {
    fn new(output: &'a Output) -> Watching<'a> {
        output.watchers.fetch_add(1, Ordering::Relaxed);
        Watching(output)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    Viewer,
    Publisher,
}

impl Role {
    /// The signaling path: `/whep` to view, `/whip` to publish.
    pub fn path(self) -> &'static str {
        match self {
            Role::Viewer => "whep",
            Role::Publisher => "whip",
        }
    }

    /// What visiond does with the video of such a session, for error messages.
    fn visiond_does(self) -> &'static str {
        match self {
            Role::Viewer => "sends",
            Role::Publisher => "receives",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error("already {0} viewers (webrtc.max_viewers)")]
    TooManyViewers(u32),
    #[error("input.uri is {0:?}, not \"webrtc\": set it to publish by WHIP")]
    NotWebrtcInput(String),
    #[error("no such session")]
    NoSuchSession,
    #[error("cannot set up the peer connection: {0}")]
    Failed(String),
}

struct Session {
    pc: Arc<dyn PeerConnection>,
    stop: Arc<Notify>,
    /// The connection's state as ICE and DTLS last reported it.
    state: watch::Receiver<RTCPeerConnectionState>,
}

#[derive(Default)]
struct Sessions {
    viewers: HashMap<String, Session>,
    publisher: Option<(String, Session)>,
}

/// Every WebRTC session of the process.
pub struct Hub {
    store: Arc<Store>,
    shared: Arc<Shared>,
    pub output: Arc<Output>,
    sessions: Mutex<Sessions>,
    ids: AtomicU64,
    id_keys: std::collections::hash_map::RandomState,
}

impl Hub {
    pub fn new(store: Arc<Store>, shared: Arc<Shared>) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            shared,
            output: Arc::new(Output::new()),
            sessions: Mutex::default(),
            ids: AtomicU64::new(0),
            id_keys: Default::default(),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session id no one can guess from another's.
    fn new_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", self.id_keys.hash_one(n))
    }

    /// Answers a WHEP offer; returns the session id and the SDP answer.
    pub async fn view(self: &Arc<Self>, offer: String) -> Result<(String, String), HubError> {
        let settings = self.store.settings();
        let max = settings.webrtc.max_viewers;
        if self.sessions().viewers.len() >= max as usize {
            return Err(HubError::TooManyViewers(max));
        }
        let offer = peer::parse_offer(offer)?;
        let plan = offer::check(&offer.sdp, Role::Viewer)?;
        let (pc, mut events) = peer::build(&settings.webrtc, Some(&offer))
            .await
            .map_err(failed)?;
        let viewer = match whep::OutgoingVideo::add_to(&pc).await {
            Ok(viewer) => viewer,
            Err(e) => return Err(close_with(&pc, failed(e)).await),
        };
        let nat_1to1_ip = &settings.webrtc.nat_1to1_ip;
        let answer = match peer::answer(&pc, &mut events, offer, &plan, nat_1to1_ip).await {
            Ok(answer) => answer,
            Err(e) => return Err(close_with(&pc, e.into()).await),
        };
        let id = self.new_id();
        let stop = Arc::new(Notify::new());
        let admitted = {
            // Counted again: other viewers may have joined while this one negotiated.
            let mut sessions = self.sessions();
            let room = sessions.viewers.len() < max as usize;
            if room {
                let session = Session {
                    pc: pc.clone(),
                    stop: stop.clone(),
                    state: events.state(),
                };
                sessions.viewers.insert(id.clone(), session);
            }
            room
        };
        if !admitted {
            return Err(close_with(&pc, HubError::TooManyViewers(max)).await);
        }
        let hub = self.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = viewer.run(&hub.output, &mut events) => {}
                () = stop.notified() => {}
            }
            hub.finish(Role::Viewer, &task_id, &pc).await;
        });
        tracing::info!(session = %id, "WHEP viewer joined");
        Ok((id, answer))
    }

    /// Answers a WHIP offer, replacing any publisher there was.
    pub async fn publish(self: &Arc<Self>, offer: String) -> Result<(String, String), HubError> {
        let settings = self.store.settings();
        if settings.input.uri != "webrtc" {
            return Err(HubError::NotWebrtcInput(settings.input.uri.clone()));
        }
        let offer = peer::parse_offer(offer)?;
        let plan = offer::check(&offer.sdp, Role::Publisher)?;
        let (pc, mut events) = peer::build(&settings.webrtc, Some(&offer))
            .await
            .map_err(failed)?;
        if let Err(e) = whip::receive_video(&pc).await {
            return Err(close_with(&pc, failed(e)).await);
        }
        let nat_1to1_ip = &settings.webrtc.nat_1to1_ip;
        let answer = match peer::answer(&pc, &mut events, offer, &plan, nat_1to1_ip).await {
            Ok(answer) => answer,
            Err(e) => return Err(close_with(&pc, e.into()).await),
        };
        let id = self.new_id();
        let stop = Arc::new(Notify::new());
        let session = Session {
            pc: pc.clone(),
            stop: stop.clone(),
            state: events.state(),
        };
        if let Some((old, session)) = self.sessions().publisher.replace((id.clone(), session)) {
            tracing::info!(session = %old, "WHIP publisher replaced");
            session.stop.notify_one();
        }
        let hub = self.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = whip::run(&hub.shared, &mut events) => {}
                () = stop.notified() => {}
            }
            hub.finish(Role::Publisher, &task_id, &pc).await;
        });
        tracing::info!(session = %id, "WHIP publisher joined");
        Ok((id, answer))
    }

    /// Ends a session (HTTP DELETE on its resource).
    pub async fn end(&self, role: Role, id: &str) -> Result<(), HubError> {
        let session = {
            let mut sessions = self.sessions();
            match role {
                Role::Viewer => sessions.viewers.remove(id),
                Role::Publisher => match &sessions.publisher {
                    Some((current, _)) if current == id => sessions.publisher.take().map(|s| s.1),
                    _ => None,
                },
            }
        };
        let session = session.ok_or(HubError::NoSuchSession)?;
        session.stop.notify_one();
        // Closed here too, so the sockets are gone when the DELETE is answered.
        let _ = session.pc.close().await;
        Ok(())
    }

    /// A session's task ended: forget it (unless already replaced) and close its connection.
    async fn finish(&self, role: Role, id: &str, pc: &Arc<dyn PeerConnection>) {
        {
            let mut sessions = self.sessions();
            match role {
                Role::Viewer => {
                    sessions.viewers.remove(id);
                }
                Role::Publisher => {
                    if sessions.publisher.as_ref().is_some_and(|(p, _)| p == id) {
                        sessions.publisher = None;
                    }
                }
            }
        }
        let _ = pc.close().await;
        tracing::info!(session = %id, ?role, "WebRTC session ended");
    }

    /// The publisher's connection state, if there is a publisher.
    fn publisher_state(&self) -> Option<RTCPeerConnectionState> {
        let sessions = self.sessions();
        sessions.publisher.as_ref().map(|(_, s)| *s.state.borrow())
    }

    /// Viewer sessions, and whether a publisher is connected now (not merely not yet timed
    /// out: one that vanished without DELETE is `disconnected` within seconds).
    pub fn counts(&self) -> (usize, bool) {
        let viewers = self.sessions().viewers.len();
        let connected = self.publisher_state() == Some(RTCPeerConnectionState::Connected);
        (viewers, connected)
    }

    /// For `/api/v1/status`.
    pub fn peers(&self) -> Json {
        let (viewers, publisher) = self.counts();
        json!({
            "viewers": viewers,
            "receiving": self.output.watchers(),
            "publisher": publisher,
            "publisher_state": self.publisher_state().map(|state| state.to_string()),
            "latency": self.output.latency(),
        })
    }
}

fn failed(e: impl std::fmt::Display) -> HubError {
    HubError::Failed(e.to_string())
}

/// Closes a connection that will not be used, passing its error on.
async fn close_with(pc: &Arc<dyn PeerConnection>, error: HubError) -> HubError {
    let _ = pc.close().await;
    error
}
