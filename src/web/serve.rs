//! The accept loop: the routes served through hyper with a header-read timeout, an idle
//! timeout and a connection cap that follows the descriptor limit, over TLS when
//! configured, and a stop that does not wait on streams that never end.

use super::connections::{Admitted, Registry, Tracked};
use super::error::ApiError;
use super::methods;
use super::pacer::{Pacer, Turn};
use super::parse_errors::JsonParseErrors;
use hyper::server::conn::Http;
use hyper::service::Service;
use hyper::{Body, Request};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use warp::reply::Response;

/// A client gets this long for a request's headers (and a TLS handshake).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that moves no byte for this long is closed. SSE streams write every second.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// On stop, requests under way get this long to finish (SIGTERM must end within 2 s).
const STOP_GRACE: Duration = Duration::from_millis(500);
/// How often idle connections are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// Requests a second to serve at most (`server.max_request_rate`), read at each request.
pub type Rate = dyn Fn() -> u32 + Send + Sync;

/// Serves `routes` on `listener` until `shutdown` resolves, at most `rate` requests a second.
pub async fn run<S>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    routes: S,
    rate: Box<Rate>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let registry = Registry::new(connection_cap(), IDLE_TIMEOUT);
    tracing::info!("at most {} connections at once", registry.cap());
    let mut http = Http::new();
    http.http1_header_read_timeout(HEADER_READ_TIMEOUT);
    let http = Arc::new(http);
    let pace = Arc::new(Pace {
        pacer: Pacer::default(),
        rate,
    });
    let (stop, stopping) = watch::channel(());
    let mut tasks = JoinSet::new();
    let mut sweep = tokio::time::interval(SWEEP_PERIOD);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = sweep.tick() => registry.close_idle(),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let socket = match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        // Out of descriptors despite the cap (other files): shed an idle
                        // connection and retry, without a busy loop.
                        tracing::warn!("accept error: {e}");
                        registry.close_least_active();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Every connection busy at the cap: the newcomer is dropped, closing it.
                if !registry.make_room().await {
                    continue;
                }
                let admitted = registry.admit();
                let _ = socket.set_nodelay(true);
                tasks.spawn(connection(
                    socket,
                    tls.clone(),
                    admitted,
                    http.clone(),
                    routes.clone(),
                    pace.clone(),
                    stopping.clone(),
                ));
            }
        }
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(STOP_GRACE * 2, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

async fn connection<S>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    admitted: Admitted,
    http: Arc<Http>,
    routes: S,
    pace: Arc<Pace>,
    stopping: watch::Receiver<()>,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let connection = admitted.connection.clone();
    let socket = super::connections::Metered {
        socket,
        connection: connection.clone(),
    };
    let service = hyper::service::service_fn(move |request| {
        let busy = connection.busy();
        let mut routes = routes.clone();
        let pace = pace.clone();
        async move {
            let response = match pace.turn() {
                Turn::After(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    methods::call(&mut routes, request).await
                }
                Turn::Refuse(after) => too_many_requests(after),
            };
            Ok::<_, Infallible>(response.map(|body| busy.over(body)))
        }
    });
    match tls {
        None => {
            let socket = JsonParseErrors::new(socket);
            drive(http.serve_connection(socket, service), &admitted, stopping).await;
        }
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(socket)).await
            {
                let stream = JsonParseErrors::new(stream);
                drive(http.serve_connection(stream, service), &admitted, stopping).await;
            }
        }
    }
}

/// The request pacer and the rate it keeps to.
struct Pace {
    pacer: Pacer,
    rate: Box<Rate>,
}

impl Pace {
    fn turn(&self) -> Turn {
        self.pacer.turn((self.rate)(), std::time::Instant::now())
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up) for a request the pacer refused.
fn too_many_requests(after: Duration) -> Response {
    use warp::Reply;
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    let mut response = ApiError::new(
        warp::http::StatusCode::TOO_MANY_REQUESTS,
        "too many requests: over server.max_request_rate",
    )
    .into_response();
    response
        .headers_mut()
        .insert(warp::http::header::RETRY_AFTER, seconds.into());
    response
}

/// Runs one connection until it ends, the registry closes it, or the server stops.
async fn drive<I, S>(
    serving: hyper::server::conn::Connection<I, S>,
    admitted: &Admitted,
    mut stopping: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Body>, Response = hyper::Response<Tracked>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tokio::pin!(serving);
    tokio::select! {
        _ = serving.as_mut() => {}
        () = admitted.connection.closing() => {}
        _ = stopping.changed() => {
            serving.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(STOP_GRACE, serving).await;
        }
    }
}

/// Half the descriptors the process has left under its limit: the other half is for what
/// it opens later (models, WebRTC sockets, files).
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let descriptors = if known { limit.rlim_cur as usize } else { 1024 };
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count());
    (descriptors.saturating_sub(open) / 2).clamp(8, 16384)
}

/// The certificate chain and key of `server.tls_cert` and `tls_key`, for HTTPS.
pub fn tls_acceptor(cert: &str, key: &str) -> anyhow::Result<TlsAcceptor> {
    use std::io::BufReader;
    let open = |path: &str| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{cert}: {e}"))?;
    let key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| anyhow::anyhow!("{key}: {e}"))?
        .ok_or_else(|| anyhow::anyhow!("{key}: no private key in it"))?;
    let mut config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("{cert}: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
