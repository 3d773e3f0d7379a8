//! The body of `/api/v1/status`: the config's state and the pipeline's, in one object.

use super::Context;
use bytes::Bytes;
use serde_json::{json, Value as Json};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a built status body is served as it is: a client polling in a loop gets the
/// same bytes instead of taking the pipeline's locks and CPU for every request.
const FRESH: Duration = Duration::from_millis(100);

pub fn status(ctx: &Context) -> Json {
    let runtime = ctx.shared.status();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": ctx.store.status(),
        "auth_required": !ctx.store.settings().server.auth_token.is_empty(),
        "engine": runtime.engine,
        "models": runtime.models,
        "pipeline": runtime.pipeline,
        "input": runtime.input,
        "peers": ctx.webrtc.peers(),
        "mqtt": ctx.mqtt.get(),
    })
}

/// The latest status body, built at most once per `FRESH` (and after each change made
/// through this server, so that a client reads its own writes).
#[derive(Default)]
pub struct Cache {
    latest: Mutex<Option<(Instant, Bytes)>>,
}

impl Cache {
    pub fn body(&self, ctx: &Context) -> Bytes {
        if let Some((built, body)) = &*self.lock() {
            if built.elapsed() < FRESH {
                return body.clone();
            }
        }
        // Built outside the lock: readers meanwhile get the previous body, never wait.
        let body = Bytes::from(status(ctx).to_string());
        *self.lock() = Some((Instant::now(), body.clone()));
        body
    }

    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Bytes)>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }
}
