//! `GET /livez` and `GET /readyz`, the probes a supervisor or load balancer polls; no token,
//! and nothing in them but states (no data of the tables).
//!
//! Live: the admin API answers. Ready: the daemon has started everything (tables open,
//! automatic recovery running) and every table serves (`ok`, `compacting`, or `degraded`,
//! which serves an empty table after a recovery with nothing to restore); a table corrupted,
//! lost or unavailable is waiting for automatic recovery or a reopen, and the daemon is not
//! ready until it is back.

use serde_json::json;
use store_owners::TableStatus;

use super::{Ctx, Reply};

/// 200 `{"status": "live"}`: answered by a worker, so the API is up.
pub(super) fn livez() -> Reply {
    Reply::json(200, &json!({ "status": "live" }))
}

/// 200 when ready, 503 otherwise; the body names the tables not serving.
pub(super) fn readyz(ctx: &Ctx) -> Reply {
    let started = ctx.started.load(std::sync::atomic::Ordering::SeqCst);
    let not_serving: Vec<_> = ctx
        .maintainer
        .stores()
        .owners()
        .iter()
        .filter_map(|o| {
            let status = o.shared().status();
            (!serving(&status)).then(|| json!({ "table": o.table(), "state": status.name() }))
        })
        .collect();
    let ready = started && not_serving.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "started": started,
        "tables_not_serving": not_serving,
    });
    Reply::json(if ready { 200 } else { 503 }, &body)
}

/// Whether a table in `status` answers reads and writes.
fn serving(status: &TableStatus) -> bool {
    matches!(
        status,
        TableStatus::Ok | TableStatus::Compacting | TableStatus::Degraded(_)
    )
}
