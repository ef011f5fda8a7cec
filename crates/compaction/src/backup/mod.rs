//! Hot, verified backups of each table, with a manifest beside every backup file, and
//! retention. (The backup schedule is in [`crate::schedules`].)
//!
//! # Layout on disk
//!
//! `<backup_dir>/<table>/<id>.redb` and `<backup_dir>/<table>/<id>.json`, where `<id>` is the
//! UTC time the backup was taken, `20261125T230102.123Z`. Directories are mode 0700, files
//! 0600. Work files start with a dot (`.<id>.redb.tmp`, `.verify-<id>.tmp`) and are never
//! listed; leftovers of a crash are removed by the next backup of the table.
//!
//! # Where things are
//!
//! - `manifest.rs`: ids, the two files of a backup, the manifest and reading it.
//! - `run.rs`: taking a backup ([`Maintainer::backup_all`], [`Maintainer::backup_one`]):
//!   snapshot, copy, verify the copy, hash, rename, manifest.
//! - `verify.rs`: listing ([`Maintainer::backups_of`], [`Maintainer::list_backups`],
//!   [`Maintainer::last_backup`]) and verification ([`Maintainer::verify_backup`]; restores use
//!   the same full check), at three depths: shallow, checksum, full.
//! - `retention.rs`: which backups are deleted after a new one.
//! - `error.rs`: the error of each operation.
//!
//! [`Maintainer::backup_all`]: crate::Maintainer::backup_all
//! [`Maintainer::backup_one`]: crate::Maintainer::backup_one
//! [`Maintainer::backups_of`]: crate::Maintainer::backups_of
//! [`Maintainer::list_backups`]: crate::Maintainer::list_backups
//! [`Maintainer::last_backup`]: crate::Maintainer::last_backup
//! [`Maintainer::verify_backup`]: crate::Maintainer::verify_backup

mod error;
mod manifest;
mod retention;
mod run;
mod verify;

pub use self::error::{
    BackupError, BackupRequestError, ListBackupsError, ManifestError, VerifyError,
};
pub use self::manifest::{
    BackupManifest, FILE_MODE, MANIFEST_FORMAT, backup_id_at, is_valid_backup_id,
};
pub use self::run::BackupOptions;
pub(crate) use self::verify::integrity_and_count;
pub use self::verify::{BackupInfo, BackupState, list_all_backups, list_table_backups};
pub use crate::report::{BackupFailure, BackupRun, BackupTrigger, TableBackup};
