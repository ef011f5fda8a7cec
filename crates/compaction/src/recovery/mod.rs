//! Restoring a table from a backup, by hand or automatically when corruption is detected, and
//! degraded mode when no good backup exists.
//!
//! # Restore (`restore.rs`)
//!
//! 1. The backup is chosen (the newest one that verifies, or the id an operator gave, which
//!    must be a well-formed id of an existing backup of that table). Only a damaged backup is
//!    skipped for an older one: an I/O error while verifying stops the restore instead.
//! 2. It is verified while it is copied into a work file in the data dir
//!    (`.restore-<table>.tmp`, fsynced): checksum, redb integrity check, record count (the
//!    full check of [`crate::backup`], `verify.rs`).
//! 3. The owner swaps the work file in: the current table file is moved (never deleted) to
//!    `<data_dir>/quarantine/<table>.<UTC timestamp>.redb`, the work file renamed in, the table
//!    reopened and its record count compared with the manifest. If any of that fails, the
//!    owner puts the previous file back and it keeps serving.
//!
//! # Automatic recovery (`auto.rs`)
//!
//! [`Maintainer::start_auto_recovery`] listens to the tables' corruption reports (at open with
//! the integrity check on, or at run time). A reported table that is still corrupt, lost or
//! unavailable (and does not reopen) is restored from the newest verified backup. When no
//! backup verifies, the table enters degraded mode
//! ([`Maintainer::recover_corrupt_table`]): its corrupt file is moved to quarantine, an empty
//! table serves in its place so the hub keeps running, the table's status says degraded, and
//! `recovery_failed` says that data was lost.
//!
//! [`Maintainer::start_auto_recovery`]: crate::Maintainer::start_auto_recovery
//! [`Maintainer::recover_corrupt_table`]: crate::Maintainer::recover_corrupt_table

mod auto;
mod point_in_time;
mod restore;

pub use self::auto::{AutoRecovery, AutoRecoveryError};
pub use self::point_in_time::RestorableRange;
pub(crate) use self::restore::VerifiedFile;
pub use self::restore::{BackupSelector, RestoreError};
pub use crate::report::{RecoveryOutcome, RecoveryReport, RecoveryTrigger, RejectedBackup};
