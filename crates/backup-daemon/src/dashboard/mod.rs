//! The operator's dashboard at `/`: one HTML page, its script and its style sheet, compiled
//! into the binary (`include_str!`, no build step, nothing fetched from elsewhere), and the
//! ring buffer of samples its plots draw, served as JSON at `GET /dashboard/samples`.
//!
//! The three assets carry no data and need no token; everything the page shows comes from
//! the token-protected routes (`/health`, `/backups`, `/dashboard/samples`, `/events`, the
//! operations), with the token the operator types once, kept in the browser's
//! `sessionStorage` (gone with the tab).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use compaction::Maintainer;
use serde_json::{Value, json};

/// How often the tables' size and fragmentation are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// Samples kept: six hours at [`SAMPLE_EVERY`]. A restart loses them.
pub const N_SAMPLES: usize = 360;

/// One of the page's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// `GET /`: the page.
    Page,
    /// `GET /dashboard.js`.
    Script,
    /// `GET /dashboard.css`.
    Style,
}

impl Asset {
    /// The asset at `path`, if any.
    pub fn at(path: &str) -> Option<Asset> {
        match path {
            "/" | "/index.html" => Some(Asset::Page),
            "/dashboard.js" => Some(Asset::Script),
            "/dashboard.css" => Some(Asset::Style),
            _ => None,
        }
    }

    /// Its `Content-Type` and text.
    pub fn content(self) -> (&'static str, &'static str) {
        match self {
            Asset::Page => ("text/html; charset=utf-8", include_str!("index.html")),
            Asset::Script => (
                "text/javascript; charset=utf-8",
                include_str!("dashboard.js"),
            ),
            Asset::Style => ("text/css; charset=utf-8", include_str!("dashboard.css")),
        }
    }
}

/// One sample of one table.
#[derive(Debug, Clone, Copy)]
struct Point {
    file_bytes: u64,
    fragmentation: f64,
}

/// Every table at one instant: when, and per table (in the owners' order) its point.
type Snapshot = (SystemTime, Vec<(&'static str, Point)>);

/// The samples of the last hours, every table at each instant.
#[derive(Debug, Default)]
pub struct Samples {
    /// Oldest first.
    ring: Mutex<VecDeque<Snapshot>>,
}

impl Samples {
    /// Sample every table now if the newest sample is [`SAMPLE_EVERY`] old (or there is
    /// none); dropping the oldest past [`N_SAMPLES`]. Reads what the owners publish, no
    /// round trip.
    pub fn sample_if_due(&self, maintainer: &Maintainer) {
        let now = SystemTime::now();
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let due = ring.back().is_none_or(|(at, _)| {
            now.duration_since(*at)
                .is_ok_and(|since| since >= SAMPLE_EVERY)
        });
        if !due {
            return;
        }
        let points = maintainer
            .stores()
            .owners()
            .iter()
            .map(|o| {
                let m = o.shared().metrics();
                let point = Point {
                    file_bytes: m.file_bytes,
                    fragmentation: m.fragmentation_ratio,
                };
                (o.table(), point)
            })
            .collect();
        ring.push_back((now, points));
        while ring.len() > N_SAMPLES {
            ring.pop_front();
        }
    }

    /// `GET /dashboard/samples`: the series per table (`[unix seconds, file bytes,
    /// fragmentation]`, oldest first) and the settings the page compares against.
    pub fn to_json(&self, maintainer: &Maintainer) -> Value {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut tables = serde_json::Map::new();
        for (at, points) in ring.iter() {
            let t = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            for (table, p) in points {
                let series = tables.entry(*table).or_insert_with(|| json!([]));
                if let Some(series) = series.as_array_mut() {
                    series.push(json!([t, p.file_bytes, p.fragmentation]));
                }
            }
        }
        let config = maintainer.config();
        json!({
            "sample_every_seconds": SAMPLE_EVERY.as_secs(),
            "threshold": config.compaction.threshold,
            "backup_interval_seconds": config.backup.interval.as_secs(),
            "tables": tables,
        })
    }
}
