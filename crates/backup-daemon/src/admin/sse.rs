//! `GET /events`: the "backups" topic as server-sent events, one thread per client.

use std::io::{ErrorKind, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::RecvTimeoutError;
use tiny_http::Request;

use super::{Ctx, POLL, SSE_KEEPALIVE, WRITE_TIMEOUT};

/// Hand the connection to a thread of its own that streams the "backups" topic. A write that
/// makes no progress for [`WRITE_TIMEOUT`] fails, which ends the stream.
pub(super) fn start_sse(ctx: &Arc<Ctx>, request: Request) {
    let events = ctx.maintainer.events().subscribe();
    let shutdown = ctx.shutdown.clone();
    let spawned = std::thread::Builder::new().name("admin-sse".into()).spawn(move || {
        let mut out = request.into_writer();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                    Connection: close\r\n\r\n: subscribed to backups\n\n";
        if out.write_all(head.as_bytes()).and_then(|()| out.flush()).is_err() {
            return;
        }
        tracing::info!("admin API: events client connected");
        let mut last_write = Instant::now();
        while !shutdown.load(Ordering::SeqCst) {
            let chunk = match events.recv_timeout(POLL) {
                Ok(envelope) => {
                    let data = serde_json::to_string(&envelope).unwrap_or_default();
                    format!("event: {}\ndata: {data}\n\n", envelope.event.name())
                }
                Err(RecvTimeoutError::Timeout) if last_write.elapsed() >= SSE_KEEPALIVE => ": keepalive\n\n".into(),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Err(e) = out.write_all(chunk.as_bytes()).and_then(|()| out.flush()) {
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                    let timeout = WRITE_TIMEOUT;
                    tracing::warn!(?timeout, "admin API: events client stopped reading; given up");
                }
                break;
            }
            last_write = Instant::now();
        }
        // The connection is not closed here: tiny_http keeps it (and what is left in its
        // buffer) for the client's next request, until the client closes it.
        drop(events);
        drop(out);
        tracing::info!("admin API: events client gone");
    });
    match spawned {
        Ok(thread) => {
            let mut threads = ctx.streams.lock().unwrap_or_else(|p| p.into_inner());
            threads.retain(|t| !t.is_finished());
            threads.push(thread);
        }
        Err(e) => tracing::error!(error = %e, "admin API: cannot start an events thread"),
    }
}
