//! The "backups" topic: publish/subscribe over crossbeam channels. Any number of subscribers;
//! a slow or vanished subscriber never blocks maintenance (its events are dropped and counted).
//! The payloads are the run types of [`crate::report`], so this module imports no operation.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde::{Deserialize, Serialize};

use crate::report::{
    BackupFailure, BackupRun, CompactionRun, RecoveryReport, RemoteUpload, RemoteUploadFailure,
    TableResult,
};

/// The topic name every maintenance event is published on.
pub const TOPIC: &str = "backups";

/// What a subscriber receives. Serializes to JSON as `{"topic": "backups", "event": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`TOPIC`].
    pub topic: String,
    /// When the event was published (RFC 3339, UTC).
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    /// The event itself.
    #[serde(flatten)]
    pub event: Event,
}

/// Maintenance events. Each variant carries its full result so a subscriber needs nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A compaction run ended (always sent, with every table's result).
    CompactionComplete {
        /// The run, as kept in the history.
        run: CompactionRun,
    },
    /// A compaction run had failures (sent in addition to `compaction_complete`).
    CompactionFailed {
        /// The run's failed tables only.
        failures: Vec<TableResult>,
    },
    /// A backup run ended (always sent, with every table's result).
    BackupComplete {
        /// The run: backups made and failures.
        run: BackupRun,
    },
    /// A backup run had failures (sent in addition to `backup_complete`).
    BackupFailed {
        /// Per-table failures.
        failures: Vec<BackupFailure>,
    },
    /// A restore succeeded.
    RecoveryComplete {
        /// What was restored, from where, and why.
        report: RecoveryReport,
    },
    /// A restore failed (or ended in degraded mode, with data lost: `report.data_lost`).
    RecoveryFailed {
        /// What was attempted and what happened.
        report: RecoveryReport,
    },
    /// A backup was copied off-site (its manifest written last).
    UploadComplete {
        /// What was uploaded.
        upload: RemoteUpload,
    },
    /// A backup could not be copied off-site; it is tried again after the next backup run.
    UploadFailed {
        /// What failed.
        failure: RemoteUploadFailure,
    },
}

impl Event {
    /// The event's wire name (`compaction_complete`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::CompactionComplete { .. } => "compaction_complete",
            Event::CompactionFailed { .. } => "compaction_failed",
            Event::BackupComplete { .. } => "backup_complete",
            Event::BackupFailed { .. } => "backup_failed",
            Event::RecoveryComplete { .. } => "recovery_complete",
            Event::RecoveryFailed { .. } => "recovery_failed",
            Event::UploadComplete { .. } => "upload_complete",
            Event::UploadFailed { .. } => "upload_failed",
        }
    }
}

/// Capacity of each subscriber's queue; past it, that subscriber's events are dropped.
pub const SUBSCRIBER_QUEUE: usize = 256;

/// The publish side of the topic. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Vec<Sender<Envelope>>>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl EventBus {
    /// A topic with no subscriber.
    pub fn new() -> EventBus {
        EventBus::default()
    }

    /// A new subscriber; it receives every event published from now on.
    pub fn subscribe(&self) -> Receiver<Envelope> {
        let (tx, rx) = bounded(SUBSCRIBER_QUEUE);
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Publish to every subscriber without ever waiting: a full queue drops the event for that
    /// subscriber, a vanished subscriber is forgotten.
    pub fn publish(&self, event: Event) {
        let envelope = Envelope {
            topic: TOPIC.to_string(),
            at: SystemTime::now(),
            event,
        };
        tracing::info!(topic = TOPIC, event = envelope.event.name(), "event");
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|s| match s.try_send(envelope.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    /// Events dropped because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Current number of subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
