//! The admin HTTP API: a `tiny_http` server read by a few worker threads (a long
//! `POST /compact` never blocks `GET /health`), bearer-token auth, JSON errors, server-sent
//! events on a thread per client, and Prometheus metrics.
//!
//! Routes: the operations of [`crate::protocol`] (`GET /health`, `POST /compact`, ...), read
//! by [`Op::from_request`] and run by [`crate::ops::execute`], and the routes served here,
//! `GET /events` (`sse.rs`), and without auth `GET /metrics` (`HEAD /metrics` answers like
//! it, without the body), `GET /livez` and `GET /readyz` (`probes.rs`).
//!
//! # Clients that stop reading or sending
//!
//! No thread waits on a client for long, so that no client can hold up the shutdown:
//!
//! - Every write to a client times out after [`WRITE_TIMEOUT`] without progress (a send
//!   timeout on the listening socket, inherited by each connection: tiny_http never hands out
//!   a connection's socket). An event stream whose client stopped reading ends there: its
//!   thread and subscription go away. The connection stays open until the client closes it
//!   (tiny_http waits on it for a next request; it cannot be closed from here).
//! - Request bodies are only taken when tiny_http has already read them (at most
//!   [`BUFFERED_BODY`] bytes, no chunked encoding, no `Expect`): a worker never reads a body
//!   from the socket, and a request that announces another body is answered 413 on a thread
//!   of its own (dropping such a request reads the rest of its body).
//! - At shutdown the event streams get [`STREAMS_STOP`] to end; a stream still blocked
//!   writing by then is left behind (it holds nothing but its connection and subscription).
//! - Slow event clients never slow down maintenance: the event bus drops what a full
//!   subscriber queue cannot take.

mod probes;
mod sse;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use compaction::Maintainer;
use compaction::remote::Offsite;
use tiny_http::{Header, Request, Response, Server};

use crate::dashboard::{Asset, Samples};
use crate::metrics::Metrics;
use crate::notify::NotifyStats;
use crate::protocol::{Op, OpError, Special};

/// Worker threads answering requests.
pub const N_WORKERS: usize = 4;
/// How often an idle SSE stream gets a comment line (that is how a gone client is noticed).
const SSE_KEEPALIVE: Duration = Duration::from_secs(1);
/// How often blocked threads look at the shutdown flag.
const POLL: Duration = Duration::from_millis(200);
/// Longest time a write to a client may make no progress; then that client is given up.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the shutdown waits for the event streams to end before leaving them behind.
pub const STREAMS_STOP: Duration = Duration::from_secs(1);
/// Largest request body taken: tiny_http reads bodies up to this size before handing the
/// request over (larger ones are read from the socket on demand).
pub const BUFFERED_BODY: usize = 1024;

/// The running admin API. [`AdminServer::shutdown`] (or drop) stops it.
#[derive(Debug)]
pub struct AdminServer {
    /// The address actually bound (port 0 resolved).
    addr: SocketAddr,
    /// State shared with the workers.
    ctx: Arc<Ctx>,
    /// The workers; joined at shutdown, after each has finished its current request.
    workers: Vec<JoinHandle<()>>,
    /// The metrics tracker's thread; joined at shutdown.
    tracker: Option<JoinHandle<()>>,
}

/// What request handlers share.
struct Ctx {
    /// The listening server; dropped when the last worker is gone.
    server: Server,
    /// The bearer token every route but /metrics requires.
    token: String,
    /// The maintenance façade.
    maintainer: Arc<Maintainer>,
    /// Off-site backups, when `[remote]` is configured.
    offsite: Option<Arc<Offsite>>,
    /// Set at shutdown: workers stop taking requests, SSE streams end. The SSE threads hold
    /// only this, never the context: one left behind must not keep the tables open.
    shutdown: Arc<AtomicBool>,
    /// The SSE client threads, given [`STREAMS_STOP`] to end at shutdown.
    streams: Mutex<Vec<JoinHandle<()>>>,
    /// The registry /metrics encodes, and the tracker of the last runs that feeds it.
    metrics: Metrics,
    /// Set once the daemon has started everything (tables open, automatic recovery running):
    /// `/readyz` answers 503 before.
    started: AtomicBool,
    /// The dashboard's samples, taken on the tracker's thread.
    samples: Samples,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

/// The admin API's socket, bound but not served yet: the daemon binds it before it creates
/// anything, so that a busy address fails the start at once, with nothing left behind.
/// Connections that arrive before [`AdminServer::start`] wait in the socket's backlog.
#[derive(Debug)]
pub struct AdminListener {
    /// The bound socket, with its write timeout set.
    listener: TcpListener,
    /// The address asked for, for error messages.
    listen: SocketAddr,
}

impl AdminListener {
    /// Bind `listen` (port 0 picks a free port). The error is one line naming the address.
    pub fn bind(listen: SocketAddr) -> Result<AdminListener> {
        let listener = TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen} (admin API)"))?;
        let listener = with_write_timeout(listener, WRITE_TIMEOUT)
            .context("setting a send timeout on the admin API's socket")?;
        Ok(AdminListener { listener, listen })
    }
}

impl AdminServer {
    /// Serve the admin API on `bound`: start the workers.
    pub fn start(
        bound: AdminListener,
        token: String,
        maintainer: Arc<Maintainer>,
        offsite: Option<Arc<Offsite>>,
        notify: Option<Arc<NotifyStats>>,
    ) -> Result<AdminServer> {
        let AdminListener { listener, listen } = bound;
        let server = Server::from_listener(listener, None)
            .map_err(|e| anyhow!("cannot serve on {listen}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("the admin server has no IP address")?;
        let metrics = Metrics::new(maintainer.clone(), offsite.clone(), notify);
        let ctx = Arc::new(Ctx {
            server,
            token,
            maintainer,
            offsite,
            shutdown: Arc::new(AtomicBool::new(false)),
            streams: Mutex::new(Vec::new()),
            metrics,
            started: AtomicBool::new(false),
            samples: Samples::default(),
        });
        // From here on, an early return drops `admin`, which stops what was started.
        let mut admin = AdminServer {
            addr,
            ctx: ctx.clone(),
            workers: Vec::new(),
            tracker: None,
        };
        // The dashboard's first sample is there from the first request on.
        ctx.samples.sample_if_due(&ctx.maintainer);
        let tracking = std::thread::Builder::new()
            .name("metrics-tracker".into())
            .spawn(move || {
                while !ctx.shutdown.load(Ordering::SeqCst) {
                    ctx.metrics.catch_up();
                    ctx.samples.sample_if_due(&ctx.maintainer);
                    std::thread::sleep(POLL);
                }
            })
            .context("spawning the metrics tracker")?;
        admin.tracker = Some(tracking);
        for i in 0..N_WORKERS {
            let ctx = admin.ctx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("admin-{i}"))
                .spawn(move || worker(&ctx))
                .context("spawning an admin worker")?;
            admin.workers.push(worker);
        }
        Ok(admin)
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tell `/readyz` that the daemon has started everything: from now on it answers 200
    /// while every table serves.
    pub fn set_started(&self) {
        self.ctx.started.store(true, Ordering::SeqCst);
    }

    /// Stop taking requests, end the event streams, and wait for requests in progress (a
    /// compaction started through the API finishes first). Event streams get
    /// [`STREAMS_STOP`]; one still blocked writing to its client is left behind.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.ctx.shutdown.store(true, Ordering::SeqCst);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        if let Some(tracker) = self.tracker.take() {
            let _ = tracker.join();
        }
        let streams =
            std::mem::take(&mut *self.ctx.streams.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = Instant::now() + STREAMS_STOP;
        let mut n_left = 0;
        for stream in streams {
            while !stream.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if stream.is_finished() {
                let _ = stream.join();
            } else {
                // Dropping the handle detaches the thread; it ends at its write timeout.
                n_left += 1;
            }
        }
        if n_left > 0 {
            tracing::warn!(
                n_left,
                "admin API: events streams still blocked writing to their clients; left behind"
            );
        }
    }
}

/// Give `listener` a send timeout (`SO_SNDTIMEO`) that the connections accepted from it
/// inherit (Linux copies it from the listening socket, as do the BSDs; a test below checks it):
/// tiny_http never hands out a connection's socket, so this is the one place to bound its
/// writes. std sets the option only through a `TcpStream`, so the socket is viewed as one for
/// the call; the option itself applies to any socket, and it is a send timeout only, so
/// `accept` is not affected.
#[cfg(unix)]
fn with_write_timeout(listener: TcpListener, timeout: Duration) -> std::io::Result<TcpListener> {
    use std::os::fd::OwnedFd;
    let socket = std::net::TcpStream::from(OwnedFd::from(listener));
    let set = socket.set_write_timeout(Some(timeout));
    let listener = TcpListener::from(OwnedFd::from(socket));
    set.map(|()| listener)
}

/// Elsewhere writes are not bounded; the shutdown still is (see [`AdminServer::shutdown`]).
#[cfg(not(unix))]
fn with_write_timeout(listener: TcpListener, _timeout: Duration) -> std::io::Result<TcpListener> {
    Ok(listener)
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(ctx: &Arc<Ctx>) {
    while !ctx.shutdown.load(Ordering::SeqCst) {
        match ctx.server.recv_timeout(POLL) {
            Ok(Some(request)) => {
                // A panic in an operation costs that request (tiny_http answers 500 when a
                // request is dropped unanswered), never the worker.
                let handled =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(ctx, request)));
                if handled.is_err() {
                    tracing::error!("admin API: a request handler panicked");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "admin server: receiving a request failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// A response about to be sent: status and JSON (or text) body.
pub(crate) struct Reply {
    /// The HTTP status.
    status: u16,
    /// The `Content-Type` header.
    content_type: &'static str,
    /// The body.
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        OpError::new(status, message).into()
    }
}

impl From<OpError> for Reply {
    fn from(e: OpError) -> Reply {
        Reply::json(e.status, &e.to_json())
    }
}

fn handle(ctx: &Arc<Ctx>, mut request: Request) {
    let started = Instant::now();
    let method = request.method().clone();
    let url = request.url().to_string();
    if !body_buffered(&request) {
        tracing::warn!(%method, %url, "admin API: refused a request body not read in advance");
        let reply = Reply::error(
            413,
            format!(
                "request bodies are taken up to {BUFFERED_BODY} bytes, with a Content-Length \
                 and without Expect"
            ),
        );
        respond_detached(request, reply);
        return;
    }
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let special = Special::from_request(method.as_str(), path);
    if special == Some(Special::Metrics) {
        let reply = match ctx.metrics.render() {
            Ok(text) => Reply {
                status: 200,
                content_type: crate::metrics::CONTENT_TYPE,
                body: text.into_bytes(),
            },
            Err(e) => Reply::error(500, format!("encoding the metrics: {e}")),
        };
        respond(request, reply);
        return;
    }
    if method.as_str() == "GET"
        && let Some(asset) = Asset::at(path)
    {
        let (content_type, text) = asset.content();
        let body = text.as_bytes().to_vec();
        respond(
            request,
            Reply {
                status: 200,
                content_type,
                body,
            },
        );
        return;
    }
    if let Some(reply) = match special {
        Some(Special::Livez) => Some(probes::livez()),
        Some(Special::Readyz) => Some(probes::readyz(ctx)),
        _ => None,
    } {
        respond(request, reply);
        return;
    }
    if !authorized(&request, &ctx.token) {
        tracing::warn!(%method, %url, "admin API: bad or missing token");
        respond(request, Reply::error(401, "missing or wrong bearer token"));
        return;
    }
    if special == Some(Special::Samples) {
        respond(
            request,
            Reply::json(200, &ctx.samples.to_json(&ctx.maintainer)),
        );
        return;
    }
    if special == Some(Special::Events) {
        sse::start_sse(ctx, request);
        return;
    }
    let result = read_body(&mut request)
        .and_then(|body| Op::from_request(method.as_str(), path, query, &body))
        .and_then(|op| crate::ops::execute(&ctx.maintainer, ctx.offsite.as_deref(), &op))
        .and_then(|result| result.to_json());
    let reply = match result {
        Ok(json) => Reply::json(200, &json),
        Err(e) => e.into(),
    };
    tracing::info!(%method, %url, status = reply.status, elapsed = ?started.elapsed(), "admin request");
    respond(request, reply);
}

/// Whether tiny_http has read the request's body already (or it has none), so that neither
/// reading it nor dropping the request (which reads what is left of a body) waits on the
/// client: a `Content-Length` up to [`BUFFERED_BODY`], no `Transfer-Encoding`, no `Expect`,
/// no `Connection: upgrade`.
fn body_buffered(request: &Request) -> bool {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    };
    let length_ok = match header("Content-Length") {
        None => true,
        Some(value) => value
            .trim()
            .parse::<usize>()
            .is_ok_and(|n| n <= BUFFERED_BODY),
    };
    length_ok
        && header("Transfer-Encoding").is_none()
        && header("Expect").is_none()
        && !header("Connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
}

/// Answer `request` on a thread of its own, which then waits for the client to send the body
/// it announced (dropping the request reads it) or to go away. Never joined.
fn respond_detached(request: Request, reply: Reply) {
    let spawned = std::thread::Builder::new()
        .name("admin-refused".into())
        .spawn(move || respond(request, reply));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "admin API: cannot start a thread to answer a request");
    }
}

/// The request body, already read by tiny_http (see [`body_buffered`]).
fn read_body(request: &mut Request) -> Result<Vec<u8>, OpError> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(BUFFERED_BODY as u64)
        .read_to_end(&mut body)
        .map_err(|e| OpError::new(400, format!("cannot read the request body: {e}")))?;
    Ok(body)
}

/// Constant-time comparison of the `Authorization: Bearer` header with the token.
fn authorized(request: &Request, token: &str) -> bool {
    let Some(header) = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
    else {
        return false;
    };
    let Some(given) = header.value.as_str().strip_prefix("Bearer ") else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn respond(request: Request, reply: Reply) {
    let header = Header::from_bytes("Content-Type", reply.content_type).expect("a valid header");
    let response = Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    // The client may have gone away; that is a normal event.
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "admin API: client went away before the reply");
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::{WRITE_TIMEOUT, with_write_timeout};

    /// Bounded writes to clients rest on this: an accepted connection inherits the send
    /// timeout of the listening socket (and nothing bounds its reads, nor `accept`).
    #[cfg(unix)]
    #[test]
    fn accepted_connections_inherit_the_write_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = with_write_timeout(listener, WRITE_TIMEOUT).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.write_timeout().unwrap(), Some(WRITE_TIMEOUT));
        assert_eq!(accepted.read_timeout().unwrap(), None);
    }
}
