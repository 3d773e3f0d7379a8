//! Pages on other origins (a WHEP player, a dashboard): a browser asks first with an
//! `OPTIONS` preflight, and reads an answer only if it names the page's origin. Preflights
//! are answered on every route; the origins in `server.allowed_origins` get the CORS headers,
//! any other page gets none, so its browser keeps the answers from it (and its writes are
//! refused with 403 besides, see `check_auth`).

use super::error::ApiError;
use warp::http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ALLOW, ORIGIN, VARY,
};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// Whether `server.allowed_origins` lets pages of `origin` use visiond.
pub fn allows(listed: &[String], origin: &str) -> bool {
    listed
        .iter()
        .any(|l| l == "*" || l.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The answer to `OPTIONS path`: the methods it takes, and for an allowed origin the
/// preflight's permission (the methods, the headers it asked for, for ten minutes).
pub fn preflight(path: &str, request: &HeaderMap, listed: &[String]) -> Response {
    let Some(allow) = super::methods::allowed(path) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(ALLOW, allow.clone());
    if let Some(origin) = allowed_origin(request, listed) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, allow);
        let asked = request.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        let default = HeaderValue::from_static("authorization, content-type");
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.unwrap_or(default));
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    headers.insert(VARY, HeaderValue::from_static("origin"));
    response
}

/// Lets an allowed origin's page read `response`, and the WHIP/WHEP `Location` in it.
pub fn decorate(
    mut response: Response,
    origin: Option<&HeaderValue>,
    listed: &[String],
) -> Response {
    let allowed = origin.filter(|o| o.to_str().is_ok_and(|o| allows(listed, o)));
    if let Some(origin) = allowed.cloned() {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("location, content-type"),
        );
        headers.append(VARY, HeaderValue::from_static("origin"));
    }
    response
}

fn allowed_origin(request: &HeaderMap, listed: &[String]) -> Option<HeaderValue> {
    let origin = request.get(ORIGIN)?;
    allows(listed, origin.to_str().ok()?).then(|| origin.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    #[test]
    fn only_listed_origins_get_permission() {
        let listed = vec!["https://dashboard.example.org".to_owned()];
        let allowed = preflight("/whep", &request("https://dashboard.example.org"), &listed);
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
        let headers = allowed.headers();
        assert_eq!(headers[ALLOW], "POST, OPTIONS");
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://dashboard.example.org"
        );
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_METHODS], "POST, OPTIONS");

        let other = preflight("/whep", &request("https://evil.example"), &listed);
        assert_eq!(other.status(), StatusCode::NO_CONTENT);
        assert!(other.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(other.headers()[ALLOW], "POST, OPTIONS");

        let any = vec!["*".to_owned()];
        assert!(allows(&any, "http://192.168.1.9:3000"));
        assert!(!allows(&[], "http://192.168.1.9:3000"));
        let unknown = preflight("/nothing", &request("https://evil.example"), &any);
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn answers_to_allowed_origins_expose_the_session_location() {
        let listed = vec!["*".to_owned()];
        let origin = "http://player.example:8080";
        let headers = request(origin);
        let response = decorate(
            StatusCode::CREATED.into_response(),
            headers.get(ORIGIN),
            &listed,
        );
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert!(response.headers()[ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("location"));
        let plain = decorate(StatusCode::CREATED.into_response(), None, &listed);
        assert!(plain.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }
}
