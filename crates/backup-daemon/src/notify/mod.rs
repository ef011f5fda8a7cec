//! `[notify]`: webhook notifications. A thread of its own takes the "backups" topic and posts
//! a JSON message ([`message::message`]) for compaction_failed, backup_failed, upload_failed,
//! recovery_complete, recovery_failed and degraded to the configured URL, retrying with
//! exponential backoff.
//!
//! The job that raised an event never waits for a notification: publishing on the topic never
//! blocks (a full subscriber queue drops the event, counted in `events_dropped_total`), and
//! all the waiting (requests, bounded by `timeout`; backoff) happens on the notifier's thread.
//! A message given up after `attempts` tries is logged and counted in
//! `notify_failures_total`.

mod message;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use compaction::{Envelope, Maintainer};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use serde::{Deserialize, Serialize};

pub use self::message::message;

/// The `[notify]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where messages are posted: `http://host:port/path`.
    pub webhook: String,
    /// Longest time one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per message, the first included (at least 1).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubled at each retry, up to [`MAX_BACKOFF`].
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
}

/// The longest wait between two tries of a message.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a stop waits for a request in flight before leaving the thread behind.
pub const STOP_WAIT: Duration = Duration::from_secs(1);

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

impl NotifyConfig {
    /// What is wrong with the section, as (key, message).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let Some(rest) = self.webhook.strip_prefix("http://") else {
            let why = if self.webhook.starts_with("https://") {
                "https is not supported (the daemon has no TLS client); post to an http:// \
                 relay on the machine or the local network"
                    .to_string()
            } else {
                format!("{:?} is not an http:// URL", self.webhook)
            };
            return Err(("webhook", why));
        };
        let host = rest.split(['/', '?']).next().unwrap_or("");
        if host.is_empty() {
            return Err(("webhook", format!("{:?} names no host", self.webhook)));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than zero".into()));
        }
        if self.attempts == 0 {
            return Err(("attempts", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// What the notifier has done since the daemon started, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Messages the webhook accepted (a 2xx answer).
    pub sent: AtomicU64,
    /// Tries that failed and were tried again.
    pub retries: AtomicU64,
    /// Messages given up after their last try.
    pub failures: AtomicU64,
}

/// The running notifier. Dropping it stops the thread: messages still queued are given up
/// (and logged), a backoff wait ends at once, and a request in flight gets [`STOP_WAIT`]
/// before the thread is left behind (it ends at the request's timeout), so a webhook that
/// never answers cannot hold up the daemon's shutdown.
#[derive(Debug)]
pub struct Notifier {
    /// Closed (dropped) to stop the thread, which also interrupts a backoff wait.
    stop: Option<Sender<()>>,
    /// The thread, joined on drop.
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    stats: Arc<NotifyStats>,
}

impl Notifier {
    /// Subscribe to `maintainer`'s events and start the thread.
    pub fn start(
        config: &NotifyConfig,
        maintainer: &Maintainer,
        data_dir: &std::path::Path,
    ) -> Result<Notifier> {
        let (stop, stopped) = bounded(0);
        let stats = Arc::new(NotifyStats::default());
        let worker = Worker {
            config: config.clone(),
            agent: ureq::AgentBuilder::new().timeout(config.timeout).build(),
            data_dir: data_dir.display().to_string(),
            stats: stats.clone(),
            stopped,
        };
        let events = maintainer.events().subscribe();
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || worker.run(events))
            .context("spawning the webhook notifier")?;
        Ok(Notifier {
            stop: Some(stop),
            thread: Some(thread),
            stats,
        })
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<NotifyStats> {
        &self.stats
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        drop(self.stop.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            // Dropping the handle detaches the thread; it ends at its request's timeout.
            tracing::warn!("webhook: a request still in flight at shutdown; left behind");
        }
    }
}

/// The notifier's thread.
struct Worker {
    config: NotifyConfig,
    agent: ureq::Agent,
    data_dir: String,
    stats: Arc<NotifyStats>,
    /// Disconnected when the [`Notifier`] is dropped.
    stopped: Receiver<()>,
}

/// How posting one message ended.
enum Posted {
    Sent,
    GivenUp,
    Stopped,
}

impl Worker {
    fn run(self, events: Receiver<Envelope>) {
        loop {
            let envelope = select! {
                recv(events) -> e => match e {
                    Ok(envelope) => envelope,
                    Err(_) => return,
                },
                recv(self.stopped) -> _ => break,
            };
            let Some(message) = message(&envelope, &self.data_dir) else {
                continue;
            };
            match self.post(&message) {
                Posted::Sent => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Posted::GivenUp => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                }
                Posted::Stopped => break,
            }
        }
        let n_left = events.len();
        if n_left > 0 {
            tracing::warn!(n_left, "webhook: stopping with events not notified");
        }
    }

    /// Post `message`, retrying with backoff; a stop interrupts the wait between tries.
    fn post(&self, message: &serde_json::Value) -> Posted {
        let event = message["event"].as_str().unwrap_or("?").to_string();
        let mut delay = self.config.backoff;
        for attempt in 1..=self.config.attempts {
            let error = match self.agent.post(&self.config.webhook).send_json(message) {
                Ok(_) => {
                    tracing::info!(%event, attempt, "webhook: notified");
                    return Posted::Sent;
                }
                Err(e) => e,
            };
            if attempt == self.config.attempts {
                tracing::error!(%event, attempt, error = %error, url = %self.config.webhook,
                    "webhook: notification given up");
                return Posted::GivenUp;
            }
            tracing::warn!(%event, attempt, error = %error, retry_in = ?delay,
                "webhook: notification failed; retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if self
                .stopped
                .recv_timeout(delay)
                .is_err_and(|e| e.is_disconnected())
            {
                return Posted::Stopped;
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        Posted::GivenUp
    }
}
