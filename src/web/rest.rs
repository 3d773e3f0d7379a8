//! The REST API over the settings store: properties one by one, the whole tree, merge patches.

use super::error::ApiError;
use super::Context;
use crate::settings::{schema, Source};
use serde_json::Value as Json;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// Largest body accepted by any write.
pub const MAX_BODY: u64 = 64 * 1024;

pub fn get_config(ctx: &Context) -> Response {
    warp::reply::json(&ctx.store.tree()).into_response()
}

pub fn get_property(ctx: &Context, section: &str, name: &str) -> Result<Response, ApiError> {
    let value = ctx
        .store
        .get(section, name)
        .ok_or_else(|| ApiError::not_found(&format!("{section}.{name}")))?;
    Ok(warp::reply::json(&value).into_response())
}

pub async fn put_property(
    ctx: Arc<Context>,
    section: String,
    name: String,
    value: Json,
) -> Result<Response, ApiError> {
    write(ctx.clone(), vec![(section.clone(), name.clone(), value)]).await?;
    get_property(&ctx, &section, &name)
}

/// RFC 7396 merge patch over the settings tree; `null` resets a key to its default.
pub async fn patch_config(ctx: Arc<Context>, patch: Json) -> Result<Response, ApiError> {
    let sections = patch.as_object().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "a merge patch is an object of sections",
        )
    })?;
    let mut edits = Vec::new();
    for (section, keys) in sections {
        let keys = keys.as_object().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{section}` must be an object of keys"),
            )
            .with_key(section)
        })?;
        for (name, value) in keys {
            let value = match value {
                Json::Null => schema::find(section, name)
                    .map(|k| k.default.clone())
                    .ok_or_else(|| ApiError::not_found(&format!("{section}.{name}")))?,
                _ => value.clone(),
            };
            edits.push((section.clone(), name.clone(), value));
        }
    }
    write(ctx.clone(), edits).await?;
    Ok(get_config(&ctx))
}

async fn write(ctx: Arc<Context>, edits: Vec<(String, String, Json)>) -> Result<(), ApiError> {
    let written = ctx.store.clone().write_async(edits, Source::Rest).await;
    ctx.status.invalidate();
    written.map_err(ApiError::from)
}

/// Parses a write's body: JSON by content type and by content, else 415.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Json, ApiError> {
    if let Some(content_type) = content_type {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("expected Content-Type: application/json, got {content_type}"),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body is not JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_must_be_json() {
        assert_eq!(
            parse_body(Some("application/json"), b"0.5").unwrap(),
            serde_json::json!(0.5)
        );
        assert_eq!(parse_body(None, b"true").unwrap(), serde_json::json!(true));
        assert!(parse_body(Some("application/merge-patch+json; charset=utf-8"), b"{}").is_ok());
        let wrong_type = parse_body(Some("text/plain"), b"0.5").unwrap_err();
        assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let not_json = parse_body(Some("application/json"), b"zero point five").unwrap_err();
        assert_eq!(not_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
