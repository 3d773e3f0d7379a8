//! WHEP (`/whep`) and WHIP (`/whip`) signaling: an `application/sdp` offer in, `201` with the
//! answer and a `Location` resource out; `DELETE` on that resource ends the session.

use super::error::ApiError;
use super::Context;
use crate::webrtc::{HubError, OfferError, Role};
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// Checks the content type and decodes the offer.
pub fn offer_text(content_type: Option<&str>, body: &[u8]) -> Result<String, ApiError> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if essence.as_deref() != Some("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the SDP offer as Content-Type: application/sdp",
        ));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the offer is not UTF-8 text"))
}

pub async fn offer(ctx: Arc<Context>, role: Role, offer: String) -> Result<Response, ApiError> {
    let (id, answer) = match role {
        Role::Viewer => ctx.webrtc.view(offer).await,
        Role::Publisher => ctx.webrtc.publish(offer).await,
    }
    .map_err(api_error)?;
    ctx.status.invalidate();
    let location = format!("/{}/{id}", role.path());
    let reply = warp::reply::with_status(answer, StatusCode::CREATED);
    let reply = warp::reply::with_header(reply, "content-type", "application/sdp");
    Ok(warp::reply::with_header(reply, "location", location).into_response())
}

pub async fn end(ctx: Arc<Context>, role: Role, id: String) -> Result<Response, ApiError> {
    ctx.webrtc.end(role, &id).await.map_err(api_error)?;
    ctx.status.invalidate();
    Ok(StatusCode::OK.into_response())
}

fn api_error(error: HubError) -> ApiError {
    let status = match &error {
        HubError::Offer(OfferError::Malformed(_) | OfferError::Refused(_)) => {
            StatusCode::BAD_REQUEST
        }
        HubError::TooManyViewers(_) => StatusCode::SERVICE_UNAVAILABLE,
        HubError::NotWebrtcInput(_) => StatusCode::CONFLICT,
        HubError::NoSuchSession => StatusCode::NOT_FOUND,
        HubError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let error = ApiError::new(status, error.to_string());
    match status {
        StatusCode::CONFLICT => error.with_key("input.uri"),
        StatusCode::SERVICE_UNAVAILABLE => error.with_key("webrtc.max_viewers"),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sdp_bodies_are_offers() {
        let sdp = b"v=0\r\n";
        assert!(offer_text(Some("application/sdp"), sdp).is_ok());
        assert!(offer_text(Some("Application/SDP; charset=utf-8"), sdp).is_ok());
        let wrong = offer_text(Some("application/json"), sdp).unwrap_err();
        assert_eq!(wrong.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(offer_text(None, sdp).is_err());
        let binary = offer_text(Some("application/sdp"), &[0xff, 0xfe]).unwrap_err();
        assert_eq!(binary.status, StatusCode::BAD_REQUEST);
    }
}
