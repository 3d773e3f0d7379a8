//! `GET /api/v1/events`: Server-Sent Events for every applied change, config errors, and
//! the status once a second, so pages and scripts stay in step without polling.

use super::Context;
use crate::settings::Event;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream, IntervalStream};
use warp::reply::{Reply, Response};
use warp::sse;

const STATUS_PERIOD: Duration = Duration::from_secs(1);

pub fn stream(ctx: &Arc<Context>) -> Response {
    let changes = BroadcastStream::new(ctx.store.subscribe()).filter_map(|event| async move {
        match event {
            Ok(event) => Some(settings_event(&event)),
            // A reader too slow for the burst: tell it to refetch everything.
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                Some(sse::Event::default().event("resync").data("{}"))
            }
        }
    });
    let ticker_ctx = ctx.clone();
    let status = IntervalStream::new(tokio::time::interval(STATUS_PERIOD)).map(move |_| {
        let body = serde_json::json!({
            "status": super::status::status(&ticker_ctx),
            "results": ticker_ctx.shared.results(),
        });
        sse::Event::default().event("status").data(body.to_string())
    });
    let events = futures_util::stream::select(changes, status).map(Ok::<_, Infallible>);
    sse::reply(sse::keep_alive().stream(events)).into_response()
}

fn settings_event(event: &Event) -> sse::Event {
    let name = match event {
        Event::Change { .. } => "change",
        Event::ConfigError { .. } => "config_error",
        Event::ConfigOk => "config_ok",
    };
    let data = serde_json::to_string(event).unwrap_or_default();
    sse::Event::default().event(name).data(data)
}
