//! The table file an owner serves, and the status it publishes about it: [`TableFile`] holds
//! the open store (or nothing, while the table is not serving) and the table's one
//! `Publisher`, and makes every change of file: a replacement (restore, or an empty table
//! after data loss), closing and reopening after an I/O error, reopening on request or after a
//! failed swap.
//!
//! The file steps of a replacement are in `aside.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use store_core::{OpenError, StoreOptions, TableStore, WriteError, fsutil};

use super::aside::{keep_aside, put_back};

use super::journal::{CatchUp, DifferenceError, Journal, JournalConfig};
use crate::error::{CallError, MaintenanceError};
use crate::report::{ReplaceReport, ReplaceRequest};
use crate::shared::{Publisher, Shared, TableStatus};

/// First delay between two attempts to reopen after an I/O error; doubled up to
/// [`REOPEN_MAX_DELAY`].
const REOPEN_FIRST_DELAY: Duration = Duration::from_millis(100);
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(5);

/// The table file of one owner.
pub(super) struct TableFile<S> {
    table: &'static str,
    path: PathBuf,
    options: StoreOptions,
    /// `None` while the table is unavailable (did not open, or mid-replacement, or closed
    /// after an I/O error).
    store: Option<S>,
    /// Set while the store is closed after an I/O error and waits to be opened again.
    reopen: Option<PendingReopen>,
    /// The only writer of the table's status and counters.
    publisher: Publisher,
    /// Where the change log lives, if the table has one.
    journal_config: Option<JournalConfig>,
    /// The change log, once opened (with the first file that opened).
    journal: Option<Journal>,
    /// The group a point-in-time replacement in progress logged: taken back if the
    /// replacement fails, so that the previous file is not brought to the restored state.
    pending_difference: Option<u64>,
}

/// The store was closed after an I/O error (redb refuses every later write until the file
/// is opened again); the owner retries opening it with a growing delay.
struct PendingReopen {
    /// The I/O error that closed it.
    cause: String,
    /// Failed attempts so far.
    attempts: u32,
    /// No attempt before this instant.
    next: Instant,
}

/// The status of a table whose file did not open.
pub(super) fn status_after_open_error(e: &OpenError) -> TableStatus {
    if e.is_corruption() {
        TableStatus::Corrupted(e.to_string())
    } else if e.is_missing() {
        TableStatus::Lost(e.to_string())
    } else {
        TableStatus::Unavailable(e.to_string())
    }
}

impl<S: TableStore> TableFile<S> {
    /// The file at `path`, opened as `store` (or not); `publisher` already holds the status
    /// that goes with it.
    pub(super) fn new(
        table: &'static str,
        path: PathBuf,
        options: StoreOptions,
        store: Option<S>,
        publisher: Publisher,
        journal_config: Option<JournalConfig>,
    ) -> TableFile<S> {
        let mut file = TableFile {
            table,
            path,
            options,
            store: None,
            reopen: None,
            publisher,
            journal_config,
            journal: None,
            pending_difference: None,
        };
        if let Some(store) = store
            && let Err(e) = file.attach(store)
        {
            file.set_status(status_after_open_error(&e));
            if !e.is_corruption() {
                file.schedule_reopen(e.to_string());
            } else {
                file.publisher.send_report();
            }
        }
        file
    }

    /// Serve `store`: first bring it up to the change log (the writes acknowledged after its
    /// last durable commit, or after the backup it was restored from).
    fn attach(&mut self, mut store: S) -> Result<CatchUp, OpenError> {
        let mut caught_up = CatchUp::default();
        if let Some(config) = &self.journal_config {
            if self.journal.is_none() {
                let journal =
                    Journal::open(config, store.log_position()).map_err(|e| OpenError::Io {
                        path: config.dir.clone(),
                        source: io::Error::other(e),
                    })?;
                self.journal = Some(journal);
            }
            let journal = self.journal.as_mut().expect("opened above");
            caught_up = journal
                .catch_up(self.table, &mut store)
                .map_err(|e| match e {
                    WriteError::Corrupted(detail) => OpenError::Corrupted {
                        path: self.path.clone(),
                        detail,
                    },
                    other => OpenError::Io {
                        path: self.path.clone(),
                        source: io::Error::other(other),
                    },
                })?;
            self.publisher.publish_log(journal.state());
        }
        self.publisher.publish_counters(store.counters());
        self.store = Some(store);
        Ok(caught_up)
    }

    /// The store and its change log, for a group commit.
    pub(super) fn store_and_journal(&mut self) -> Option<(&mut S, Option<&mut Journal>)> {
        let store = self.store.as_mut()?;
        Some((store, self.journal.as_mut()))
    }

    /// Publish what a commit changed in the change log (no lock, no allocation).
    pub(super) fn publish_log_progress(&self) {
        if let Some(journal) = &self.journal {
            journal.publish_commit(&self.publisher);
        }
    }

    /// When the store's lazy commits are due to be made durable.
    pub(super) fn sync_due(&self) -> Option<Instant> {
        self.journal.as_ref().and_then(|j| j.sync_due())
    }

    /// Make the store's lazy commits durable (they are in the log already). A failure is an
    /// I/O error of the file: it is closed and reopened, which replays the log.
    pub(super) fn sync(&mut self) {
        let (Some(store), Some(journal)) = (&mut self.store, &mut self.journal) else {
            return;
        };
        // Also after a swap (compaction, restore) whose fresh file is durable already.
        if let Err(e) = journal.sync(store) {
            self.close_after_io_error(&e);
        } else {
            self.publisher.publish_log(journal.state());
        }
    }

    /// Delete the change-log segments no restore needs (see `Journal::prune`). Returns the
    /// bytes freed.
    pub(super) fn prune_log(&mut self, keep_after: u64) -> Result<u64, MaintenanceError> {
        // The groups the file holds durably are needed by no replay at open.
        self.sync();
        let Some(journal) = &mut self.journal else {
            return Ok(0);
        };
        let freed = journal
            .prune(keep_after)
            .map_err(|e| MaintenanceError::io("pruning the change log", io::Error::other(e)))?;
        self.publisher.publish_log(journal.state());
        Ok(freed)
    }

    fn schedule_reopen(&mut self, cause: String) {
        self.reopen = Some(PendingReopen {
            cause,
            attempts: 0,
            next: Instant::now() + REOPEN_FIRST_DELAY,
        });
    }

    pub(super) fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(super) fn store(&self) -> Option<&S> {
        self.store.as_ref()
    }

    pub(super) fn store_mut(&mut self) -> Option<&mut S> {
        self.store.as_mut()
    }

    /// The state readers see.
    pub(super) fn shared(&self) -> &Arc<Shared> {
        self.publisher.shared()
    }

    pub(super) fn status(&self) -> TableStatus {
        self.publisher.status()
    }

    pub(super) fn set_status(&self, status: TableStatus) {
        self.publisher.set_status(status);
    }

    /// Publish the store's counters (after a commit or a swap).
    pub(super) fn publish_counters(&self) {
        if let Some(store) = &self.store {
            self.publisher.publish_counters(store.counters());
        }
    }

    /// The identity of the file the table path names now.
    pub(super) fn identity(&self) -> io::Result<super::command::FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path)?;
        Ok((meta.dev(), meta.ino()))
    }

    /// Record corruption met by a read, a commit or an integrity check, and report it.
    pub(super) fn report_corruption(&self, detail: String) {
        self.publisher.report_corruption(detail);
    }

    /// The error of a data command while the table does not serve.
    pub(super) fn unavailable(&self) -> CallError {
        CallError::Unavailable {
            table: self.table,
            status: self.status().to_string(),
        }
    }

    /// When the next attempt to reopen after an I/O error is due, if one is pending.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.reopen.as_ref().map(|r| r.next)
    }

    /// redb's exclusive in-place compaction; readers see `Compacting` meanwhile, then the
    /// status from before (a degraded table stays degraded). Returns the records after.
    pub(super) fn compact_in_place(&mut self) -> Result<u64, MaintenanceError> {
        // redb compacts what is durable: the lazy commits first.
        self.sync();
        let Some(store) = &mut self.store else {
            return Err(MaintenanceError::Unavailable("table is not open".into()));
        };
        let status_before = self.publisher.status();
        self.publisher.set_status(TableStatus::Compacting);
        let result = store.compact_in_place();
        self.publisher.set_status(status_before);
        result?;
        Ok(store.counters().records)
    }

    /// The [`crate::OwnerHandle::replace`] command.
    pub(super) fn replace(
        &mut self,
        request: ReplaceRequest,
    ) -> Result<ReplaceReport, MaintenanceError> {
        if !request.replay_log {
            self.log_difference(&request)?;
        }
        self.sync();
        if let Some(store) = self.store.take()
            && let Err(e) = store.close()
        {
            tracing::warn!(table = self.table, error = %e, "closing before replacement failed");
        }
        self.reopen = None;
        let quarantined = match keep_aside(&self.path, &request.quarantine) {
            Ok(q) => q,
            Err(e) => {
                self.reopen_after_failed_replace(None);
                return Err(MaintenanceError::io(
                    "keeping the current file in quarantine",
                    e,
                ));
            }
        };
        let put_in = match &request.replacement {
            Some(replacement) => fsutil::replace_file(replacement, &self.path)
                .map_err(|e| MaintenanceError::io("renaming the replacement in", e)),
            None => S::create_empty(&self.path, &self.options)
                .map_err(|e| MaintenanceError::Replacement(Arc::new(e))),
        };
        if let Err(e) = put_in {
            self.reopen_after_failed_replace(quarantined.as_deref());
            return Err(e);
        }
        let store = match S::open(&self.path, &self.options) {
            Ok(store) => store,
            Err(e) => {
                self.reopen_after_failed_replace(quarantined.as_deref());
                return Err(MaintenanceError::Replacement(Arc::new(e)));
            }
        };
        let records = store.counters().records;
        if let Some(expected) = request.expected_records
            && expected != records
        {
            drop(store);
            self.reopen_after_failed_replace(quarantined.as_deref());
            return Err(MaintenanceError::RecordCount {
                expected,
                found: records,
            });
        }
        let caught_up = match self.attach(store) {
            Ok(c) => c,
            Err(e) => {
                self.reopen_after_failed_replace(quarantined.as_deref());
                return Err(MaintenanceError::Replacement(Arc::new(e)));
            }
        };
        self.pending_difference = None;
        // An empty table that the change log rebuilt from its first group lost nothing.
        let rebuilt =
            request.replacement.is_none() && caught_up.gap.is_none() && caught_up.groups > 0;
        self.set_status(match request.degraded {
            Some(detail) if !rebuilt => TableStatus::Degraded(detail),
            _ => TableStatus::Ok,
        });
        Ok(ReplaceReport {
            quarantined,
            records: self
                .store
                .as_ref()
                .map_or(records, |s| s.counters().records),
            log_replayed: caught_up.groups,
            log_unrecovered: caught_up.gap,
        })
    }

    /// A point-in-time restore: log the writes that turn the table into the replacement, so
    /// that the log stays the table's whole history (see `Journal::log_difference`).
    fn log_difference(&mut self, request: &ReplaceRequest) -> Result<(), MaintenanceError> {
        let (Some(journal), Some(live), Some(replacement)) =
            (&mut self.journal, &self.store, &request.replacement)
        else {
            return Ok(());
        };
        let mut fresh = S::open(replacement, &self.options)
            .map_err(|e| MaintenanceError::Replacement(Arc::new(e)))?;
        let logged = journal.log_difference(live, &mut fresh);
        let closed = fresh.close();
        match logged {
            Ok((group, n_ops)) => {
                tracing::info!(
                    table = self.table,
                    n_ops,
                    seq = group.seq,
                    "point-in-time restore logged as writes"
                );
                self.pending_difference = Some(group.seq);
            }
            Err(DifferenceError::Store(WriteError::Corrupted(d))) => {
                return Err(MaintenanceError::Corrupted(d));
            }
            Err(e) => return Err(MaintenanceError::Storage(Arc::new(e))),
        }
        if let Err(e) = closed {
            if let (Some(seq), Some(journal)) = (self.pending_difference.take(), &mut self.journal)
            {
                journal.retract(seq);
            }
            return Err(MaintenanceError::Storage(Arc::new(e)));
        }
        Ok(())
    }

    /// Put the previous file back (from quarantine) after a failed replacement, and reopen it.
    fn reopen_after_failed_replace(&mut self, quarantined: Option<&Path>) {
        if let (Some(seq), Some(journal)) = (self.pending_difference.take(), &mut self.journal) {
            journal.retract(seq);
        }
        if let Some(q) = quarantined
            && let Err(e) = put_back(&self.path, q)
        {
            tracing::error!(table = self.table, error = %e, "cannot put the original file back");
        }
        let _ = self.install(S::open(&self.path, &self.options));
    }

    /// Serve the store just opened (status ok), or say why the file did not open.
    fn install(&mut self, opened: Result<S, OpenError>) -> Result<(), OpenError> {
        match opened.and_then(|store| self.attach(store)) {
            Ok(_) => {
                self.set_status(TableStatus::Ok);
                Ok(())
            }
            Err(e) => {
                self.set_status(status_after_open_error(&e));
                Err(e)
            }
        }
    }

    /// After a storage failure of a commit: close the store (redb answers every later write
    /// with "Previous I/O error occurred") and open the file again, now or later.
    pub(super) fn close_after_io_error(&mut self, cause: &dyn std::error::Error) {
        tracing::warn!(table = self.table, error = %cause, "I/O error: closing and reopening the table file");
        if let Some(store) = self.store.take() {
            // Closing a latched database may fail; its last durable commit is on disk anyway.
            let _ = store.close();
        }
        self.set_status(TableStatus::Unavailable(format!(
            "reopening after an I/O error: {cause}"
        )));
        self.reopen = Some(PendingReopen {
            cause: cause.to_string(),
            attempts: 0,
            next: Instant::now(),
        });
        self.try_reopen();
    }

    /// One attempt to reopen after an I/O error, if one is pending and due.
    pub(super) fn try_reopen(&mut self) {
        let Some(pending) = &mut self.reopen else {
            return;
        };
        if Instant::now() < pending.next {
            return;
        }
        // The file was fine before the failed write: no need to verify every page again.
        let options = StoreOptions {
            check_integrity_on_open: false,
            ..self.options.clone()
        };
        let attempts = pending.attempts + 1;
        match self.install(S::open(&self.path, &options)) {
            Ok(()) => {
                tracing::info!(
                    table = self.table,
                    attempts,
                    "table file reopened after an I/O error"
                );
                self.reopen = None;
                self.publisher.count_reopen();
            }
            Err(e) if e.is_corruption() || e.is_missing() => {
                self.reopen = None;
                self.publisher
                    .report_for_restore(status_after_open_error(&e));
            }
            Err(e) => {
                let Some(pending) = &mut self.reopen else {
                    return;
                };
                pending.attempts += 1;
                let delay = REOPEN_FIRST_DELAY
                    .saturating_mul(1 << pending.attempts.min(6))
                    .min(REOPEN_MAX_DELAY);
                pending.next = Instant::now() + delay;
                let status = TableStatus::Unavailable(format!(
                    "reopening after an I/O error ({}) failed {} times, retrying: {e}",
                    pending.cause, pending.attempts
                ));
                self.set_status(status);
            }
        }
    }

    /// The [`crate::OwnerHandle::reopen`] command.
    pub(super) fn reopen_on_request(&mut self) -> Result<(), MaintenanceError> {
        if self.store.is_some() {
            return Ok(());
        }
        self.reopen = None;
        self.install(S::open(&self.path, &self.options))
            .map_err(|e| {
                if e.is_corruption() {
                    // Corruption travels as its words, like everywhere.
                    MaintenanceError::Corrupted(e.to_string())
                } else {
                    MaintenanceError::Open(Arc::new(e))
                }
            })
    }

    /// After a swap that failed once the fresh file was renamed in: close the store, which
    /// writes to the unlinked old file, and open what is at the table path.
    pub(super) fn reopen_after_swap_failure(&mut self) {
        if let Some(store) = self.store.take()
            && let Err(e) = store.close()
        {
            tracing::warn!(table = self.table, error = %e, "closing the replaced file failed");
        }
        match S::open(&self.path, &self.options).and_then(|store| self.attach(store)) {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(table = self.table, error = %e, "table file does not reopen after a failed swap");
                self.set_status(TableStatus::Unavailable(e.to_string()));
            }
        }
    }

    /// Close the file for good (the owner is stopping) and say so.
    pub(super) fn close(mut self) {
        self.sync();
        if let Some(store) = self.store.take()
            && let Err(e) = store.close()
        {
            tracing::warn!(table = self.table, error = %e, "closing the table file failed");
        }
        self.set_status(TableStatus::Closed);
    }
}
