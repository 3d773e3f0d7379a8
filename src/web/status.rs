//! The body of `/api/v1/status`: the config's state and the pipeline's, in one object.

use super::Context;
use serde_json::{json, Value as Json};

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
    })
}
