//! Methods around warp's routes: HEAD answered as GET (hyper sends no body for it), and
//! 405 answers (and OPTIONS, see `cors`) with the `Allow` header, read from the OpenAPI
//! description so that the two cannot disagree.

use hyper::service::Service;
use hyper::{Body, Method, Request};
use std::convert::Infallible;
use std::sync::OnceLock;
use warp::http::header::{HeaderValue, ALLOW};
use warp::http::StatusCode;
use warp::reply::Response;

pub async fn call<S>(routes: &mut S, mut request: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    if request.method() == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
    let path = request.uri().path().to_owned();
    let Ok(mut response) = routes.call(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(allow) = allowed(&path) {
            response.headers_mut().insert(ALLOW, allow);
        }
    }
    response
}

/// One path template of the OpenAPI description, by segment.
struct Template {
    segments: Vec<Segment>,
    allow: HeaderValue,
}

enum Segment {
    Exact(String),
    /// A `{parameter}`, with the values its schema's `enum` lists, if any.
    Parameter(Option<Vec<String>>),
}

/// The methods `path` takes, as an `Allow` value.
pub(super) fn allowed(path: &str) -> Option<HeaderValue> {
    static TEMPLATES: OnceLock<Vec<Template>> = OnceLock::new();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    TEMPLATES
        .get_or_init(templates)
        .iter()
        .find(|t| {
            t.segments.len() == segments.len()
                && t.segments.iter().zip(&segments).all(|(t, s)| match t {
                    Segment::Exact(exact) => exact == s,
                    Segment::Parameter(None) => !s.is_empty(),
                    Segment::Parameter(Some(values)) => values.iter().any(|v| v == s),
                })
        })
        .map(|t| t.allow.clone())
}

fn templates() -> Vec<Template> {
    let document = super::openapi::document();
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let parameter = |name: &str| {
                let values = item["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == name)
                    .and_then(|p| p["schema"]["enum"].as_array())
                    .map(|e| e.iter().filter_map(|v| v.as_str().map(str::to_owned)));
                Segment::Parameter(values.map(Iterator::collect))
            };
            let segments = path
                .trim_start_matches('/')
                .split('/')
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => parameter(name),
                        None => Segment::Exact(s.to_owned()),
                    },
                )
                .collect();
            let mut methods: Vec<String> = ["get", "put", "post", "patch", "delete"]
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(str::to_ascii_uppercase)
                .collect();
            if methods.iter().any(|m| m == "GET") {
                methods.insert(1, "HEAD".to_owned());
            }
            methods.push("OPTIONS".to_owned()); // every path answers CORS preflights
            let allow = HeaderValue::from_str(&methods.join(", ")).expect("method names");
            Template { segments, allow }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_the_described_methods() {
        assert_eq!(
            allowed("/api/v1/config").unwrap(),
            "GET, HEAD, PATCH, OPTIONS"
        );
        assert_eq!(
            allowed("/api/v1/config/pose/enabled").unwrap(),
            "GET, HEAD, PUT, OPTIONS"
        );
        assert_eq!(allowed("/whep").unwrap(), "POST, OPTIONS");
        assert_eq!(allowed("/pose/enabled").unwrap(), "GET, HEAD, PUT, OPTIONS");
        assert!(allowed("/nothing/here").is_none());
    }
}
