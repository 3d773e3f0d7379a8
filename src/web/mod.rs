//! The HTTP side: routes, REST, SSE, the page, OpenAPI and metrics.

mod connections;
mod cors;
mod error;
mod events;
mod host;
mod methods;
mod metrics;
mod openapi;
mod pacer;
mod page;
mod parse_errors;
mod rest;
mod serve;
mod status;
mod webrtc;

use crate::pipeline::status::Shared;
use crate::settings::schema::MODEL_SECTIONS;
use crate::settings::Store;
use crate::vision::catalog::Catalog;
use crate::webrtc::{Hub, Role};
use error::ApiError;
use serde_json::Value as Json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

/// What every handler may read.
pub struct Context {
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub catalog: Option<Catalog>,
    pub page: page::Page,
    pub webrtc: Arc<Hub>,
    pub mqtt: Arc<crate::mqtt::State>,
    hosts: host::Hosts,
    status: status::Cache,
}

impl Context {
    pub fn new(
        store: Arc<Store>,
        shared: Arc<Shared>,
        catalog: Option<Catalog>,
        webrtc: Arc<Hub>,
        mqtt: Arc<crate::mqtt::State>,
    ) -> anyhow::Result<Arc<Context>> {
        Ok(Arc::new(Context {
            store,
            shared,
            catalog,
            page: page::Page::new()?,
            webrtc,
            mqtt,
            hosts: host::Hosts::of_this_machine(),
            status: status::Cache::default(),
        }))
    }
}

/// Serves until `shutdown` resolves: over HTTPS when `server.tls_cert` and `tls_key` are set.
pub async fn serve(
    ctx: Arc<Context>,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = ctx.store.settings().server.clone();
    let tls = match (server.tls_cert.as_str(), server.tls_key.as_str()) {
        ("", "") => None,
        ("", _) | (_, "") => {
            anyhow::bail!("server.tls_cert and server.tls_key: set both or neither")
        }
        (cert, key) => Some(serve::tls_acceptor(cert, key)?),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    ready(&format!("{scheme}://{}/", listener.local_addr()?));
    let store = ctx.store.clone();
    let rate = Box::new(move || store.settings().server.max_request_rate);
    serve::run(listener, tls, warp::service(routes(ctx)), rate, shutdown).await;
    Ok(())
}

/// The port is bound: log where, and tell systemd (`Type=notify`) that the service is up.
fn ready(url: &str) {
    tracing::info!("serving {url}");
    crate::systemd::notify("READY=1");
}

pub fn routes(ctx: Arc<Context>) -> BoxedFilter<(Response,)> {
    let with_ctx = {
        let ctx = ctx.clone();
        warp::any().map(move || ctx.clone())
    };
    let read = with_ctx
        .clone()
        .and(authorized(ctx.store.clone(), false))
        .boxed();
    let write = with_ctx
        .clone()
        .and(authorized(ctx.store.clone(), true))
        .and(body(rest::parse_body))
        .boxed();
    let api = || warp::path("api").and(warp::path("v1"));

    let config_get = api()
        .and(warp::path!("config"))
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| rest::get_config(&ctx));
    let config_patch = api()
        .and(warp::path!("config"))
        .and(warp::patch())
        .and(write.clone())
        .then(|ctx, patch| async move { reply(rest::patch_config(ctx, patch).await) });
    let property_get = api()
        .and(warp::path!("config" / String / String))
        .and(warp::get())
        .and(read.clone())
        .map(|section: String, name: String, ctx: Arc<Context>| {
            reply(rest::get_property(&ctx, &section, &name))
        });
    let property_put = api()
        .and(warp::path!("config" / String / String))
        .and(warp::put())
        .and(write.clone())
        .then(|section, name, ctx, value| async move {
            reply(rest::put_property(ctx, section, name, value).await)
        });
    // The seed's paths: /classification/enabled and so on.
    let alias_get = warp::path!(String / String)
        .and(model_section())
        .and(warp::get())
        .and(read.clone())
        .map(|section: String, name: String, ctx: Arc<Context>| {
            reply(rest::get_property(&ctx, &section, &name))
        });
    let alias_put = warp::path!(String / String)
        .and(model_section())
        .and(warp::put())
        .and(write)
        .then(|section, name, ctx, value| async move {
            reply(rest::put_property(ctx, section, name, value).await)
        });
    let status = api()
        .and(warp::path!("status"))
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| {
            let mut response = Response::new(ctx.status.body(&ctx).into());
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("application/json"),
            );
            response
        });
    let results = api()
        .and(warp::path!("results"))
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| warp::reply::json(&ctx.shared.results()).into_response());
    let snapshot = api()
        .and(warp::path!("snapshot.jpg"))
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| reply(snapshot(&ctx)));
    let models = api()
        .and(warp::path!("models"))
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| warp::reply::json(&models(&ctx)).into_response());
    let events = api()
        .and(warp::path!("events"))
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| events::stream(&ctx));
    let openapi = api()
        .and(warp::path!("openapi.json"))
        .and(warp::get())
        .map(|| warp::reply::json(&openapi::document()).into_response());
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(read.clone())
        .map(|ctx: Arc<Context>| metrics::render(&ctx));
    // With auth_viewers the page itself is a read: without the token a prompt for it.
    let index = warp::path::end()
        .and(warp::get())
        .and(with_ctx.clone())
        .and(warp::header::optional::<String>("authorization"))
        .map(|ctx: Arc<Context>, auth: Option<String>| {
            let server = &ctx.store.settings().server;
            if server.auth_viewers && !token_matches(server, auth.as_deref()) {
                page::token_prompt()
            } else {
                ctx.page.render(&ctx)
            }
        });
    let assets = warp::path!("static" / String)
        .and(warp::get())
        .map(|name: String| page::asset(&name));
    // Preflights need no token: browsers send none with them. Other methods are "not
    // found" here, not "method not allowed": every path would answer 405 otherwise.
    let preflight = warp::method()
        .and_then(|method: warp::http::Method| async move {
            if method == warp::http::Method::OPTIONS {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(with_ctx.clone())
        .map(
            |path: warp::path::FullPath, headers: HeaderMap, ctx: Arc<Context>| {
                cors::preflight(
                    path.as_str(),
                    &headers,
                    &ctx.store.settings().server.allowed_origins,
                )
            },
        );
    let signaling = |role: Role, write: bool| {
        let offer = warp::path(role.path())
            .and(warp::path::end())
            .and(warp::post())
            .and(with_ctx.clone())
            .and(authorized(ctx.store.clone(), write))
            .and(body(webrtc::offer_text))
            .then(move |ctx, offer| async move { reply(webrtc::offer(ctx, role, offer).await) });
        let end = warp::path(role.path())
            .and(warp::path::param::<String>())
            .and(warp::path::end())
            .and(warp::delete())
            .and(with_ctx.clone())
            .and(authorized(ctx.store.clone(), write))
            .then(move |id, ctx| async move { reply(webrtc::end(ctx, role, id).await) });
        [offer.boxed(), end.boxed()]
    };

    // Each route boxed, then chained: warp's nested `or` types grow with every route and
    // make compile times explode otherwise.
    let mut routes: Vec<BoxedFilter<(Response,)>> = vec![
        config_get.boxed(),
        config_patch.boxed(),
        property_get.boxed(),
        property_put.boxed(),
        status.boxed(),
        results.boxed(),
        events.boxed(),
        snapshot.boxed(),
        models.boxed(),
        openapi.boxed(),
        metrics.boxed(),
        index.boxed(),
        assets.boxed(),
        alias_get.boxed(),
        alias_put.boxed(),
        preflight.boxed(),
    ];
    // Viewing is a read (a token only with auth_viewers); publishing is a write.
    routes.extend(signaling(Role::Viewer, false));
    routes.extend(signaling(Role::Publisher, true));
    let all = routes
        .into_iter()
        .reduce(|all, route| all.or(route).unify().boxed())
        .expect("routes");
    let served = known_host(ctx.clone())
        .and(all)
        .recover(error::recover)
        .unify()
        .map(Reply::into_response);
    // Only the Origin header is taken (not a copy of every header): this is on every request.
    let origin = warp::header::optional::<HeaderValue>("origin")
        .or(warp::any().map(|| None))
        .unify();
    origin
        .and(with_ctx)
        .and(served)
        .map(|origin: Option<HeaderValue>, ctx: Arc<Context>, response: Response| {
            let listed = &ctx.store.settings().server.allowed_origins;
            cors::decorate(response, origin.as_ref(), listed)
        })
        .with(warp::log::custom(|info| {
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), "request");
        }))
        .map(Reply::into_response)
        .boxed()
}

/// The model catalog, each entry with whether its file is here.
fn models(ctx: &Context) -> Json {
    let Some(catalog) = &ctx.catalog else {
        return Json::Array(Vec::new());
    };
    let entries = catalog.entries.iter().map(|entry| {
        serde_json::json!({
            "name": entry.name, "task": entry.task, "file": entry.file,
            "present": catalog.path_of(entry).is_file(), "license": entry.license,
            "input_shape": entry.input_shape, "sha256": entry.sha256,
        })
    });
    Json::Array(entries.collect())
}

/// The latest annotated frame as a JPEG, for a quick look without WebRTC.
fn snapshot(ctx: &Context) -> Result<Response, ApiError> {
    let frame = ctx
        .shared
        .frame()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no frame yet"))?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode(
            &frame.rgb,
            frame.width,
            frame.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(warp::reply::with_header(jpeg, "content-type", "image/jpeg").into_response())
}

fn reply<T: Reply>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(ok) => ok.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Passes `/<model>/<key>` paths only for the six model sections.
fn model_section() -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            let first = path
                .as_str()
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("");
            if MODEL_SECTIONS.contains(&first) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// Bearer-token check: writes need it whenever `server.auth_token` is set, reads only with
/// `server.auth_viewers`. Writes also refuse cross-site origins (a page elsewhere posting
/// to the appliance through the user's browser).
fn authorized(store: Arc<Store>, write: bool) -> BoxedFilter<()> {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("host"))
        .and_then(move |auth, origin, host| check_auth(auth, origin, host, write, store.clone()))
        .untuple_one()
        .boxed()
}

async fn check_auth(
    auth: Option<String>,
    origin: Option<String>,
    host: Option<String>,
    write: bool,
    store: Arc<Store>,
) -> Result<(), warp::Rejection> {
    let server = store.settings().server.clone();
    if write {
        if let (Some(origin), Some(host)) = (&origin, &host) {
            let origin_host = origin.split("://").nth(1).unwrap_or(origin);
            if origin_host != host && !cors::allows(&server.allowed_origins, origin) {
                return Err(warp::reject::custom(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("cross-origin write from {origin} refused: list the origin in server.allowed_origins"),
                )));
            }
        }
    }
    let needs_token = !server.auth_token.is_empty() && (write || server.auth_viewers);
    if needs_token && !token_matches(&server, auth.as_deref()) {
        return Err(warp::reject::custom(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this needs \"Authorization: Bearer <server.auth_token>\"",
        )));
    }
    Ok(())
}

/// Whether an Authorization header carries the token (always, when none is set).
fn token_matches(server: &crate::settings::typed::Server, auth: Option<&str>) -> bool {
    server.auth_token.is_empty() || auth == Some(format!("Bearer {}", server.auth_token).as_str())
}

/// Refuses requests whose Host is not a name of this appliance (DNS rebinding: a page on
/// another name, resolved to our address, with its Origin to match).
fn known_host(ctx: Arc<Context>) -> BoxedFilter<()> {
    warp::host::optional()
        .and_then(move |authority: Option<warp::host::Authority>| {
            let ctx = ctx.clone();
            async move {
                let Some(authority) = authority else {
                    return Ok(());
                };
                let listed = &ctx.store.settings().server.allowed_hosts;
                if ctx.hosts.allows(authority.host(), listed) {
                    return Ok(());
                }
                Err(warp::reject::custom(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {} is not this appliance's; add it to server.allowed_hosts",
                        authority.host()
                    ),
                )))
            }
        })
        .untuple_one()
        .boxed()
}

/// A request body of at most 64 KiB, sized by Content-Length or sent chunked, checked and
/// decoded by `parse` from its content type and bytes (an SDP offer, a write's JSON).
fn body<T: Send + 'static>(
    parse: fn(Option<&str>, &[u8]) -> Result<T, ApiError>,
) -> BoxedFilter<(T,)> {
    warp::header::optional::<u64>("content-length")
        .and_then(move |length: Option<u64>| async move {
            // Refused before the body is sent.
            match length {
                Some(length) if length > rest::MAX_BODY => Err(warp::reject::custom(too_large())),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .and_then(move |content_type: Option<String>, chunks| async move {
            let body = collect_body(chunks).await.map_err(warp::reject::custom)?;
            parse(content_type.as_deref(), &body).map_err(warp::reject::custom)
        })
        .boxed()
}

async fn collect_body<B: bytes::Buf>(
    chunks: impl futures_util::Stream<Item = Result<B, warp::Error>>,
) -> Result<Vec<u8>, ApiError> {
    use bytes::BufMut;
    use futures_util::StreamExt;
    let mut chunks = Box::pin(chunks);
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        if body.len() + chunk.remaining() > rest::MAX_BODY as usize {
            return Err(too_large());
        }
        body.put(chunk);
    }
    Ok(body)
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB")
}
