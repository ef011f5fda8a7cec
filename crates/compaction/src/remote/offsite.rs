//! [`Offsite`]: the façade of off-site backups over a [`Maintainer`]: the bucket, how objects
//! are encoded, the identities that decode them, the state `/health` and the metrics show,
//! and the set of backups a verify or restore is reading (which remote retention never
//! deletes). Its operations are `impl Offsite` blocks in `list.rs`, `restore.rs`,
//! `recover.rs`, `sync.rs`, `ship.rs` and `retention.rs`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use store_core::changelog::LogCursor;

use super::bucket::{Bucket, Credentials};
use super::codec::Encoding;
use super::error::OpenRemoteError;
use super::fetch::read_identities;
use crate::config::RemoteConfig;
use crate::maintainer::Maintainer;
use crate::report::RemoteHealth;

/// Off-site backups of a maintainer's tables. Share it behind an `Arc`.
pub struct Offsite {
    /// The tables, their local backups and the event topic.
    pub(crate) maintainer: Arc<Maintainer>,
    /// The settings.
    pub(crate) config: RemoteConfig,
    /// The bucket (and the runtime of its client).
    pub(crate) bucket: Bucket,
    /// Compression and recipients of uploads.
    pub(crate) encoding: Encoding,
    /// What decrypts objects; empty without `identity_file`.
    pub(crate) identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// What `/health` and the metrics show.
    pub(crate) status: Mutex<RemoteHealth>,
    /// Backups being read by a verify or a restore, with how many readers each.
    pub(crate) reading: Mutex<BTreeMap<(String, String), usize>>,
    /// One upload pass at a time.
    pub(crate) upload_lock: Mutex<()>,
    /// One change-log shipping pass at a time; it holds, per table, where the last group
    /// shipped ends in the local log, so the next pass reads on from there.
    pub(crate) ship_lock: Mutex<BTreeMap<String, LogCursor>>,
}

impl std::fmt::Debug for Offsite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offsite")
            .field("url", &self.config.url)
            .field("encoding", &self.encoding)
            .field("identities", &self.identities.len())
            .finish_non_exhaustive()
    }
}

/// Read the age X25519 recipients in `path`: one a line, blank lines and `#` comments
/// skipped; at least one.
fn read_recipients(path: &Path) -> Result<Vec<age::x25519::Recipient>, OpenRemoteError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|source| OpenRemoteError::ReadKeyFile {
            key: "encryption_recipients",
            path: path.to_path_buf(),
            source,
        })?;
    let mut recipients = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let recipient = line.parse::<age::x25519::Recipient>().map_err(|reason| {
            OpenRemoteError::BadRecipient {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.to_string(),
            }
        })?;
        recipients.push(recipient);
    }
    if recipients.is_empty() {
        return Err(OpenRemoteError::Config {
            key: "encryption_recipients",
            message: format!("{} holds no recipient", path.display()),
        });
    }
    Ok(recipients)
}

impl Offsite {
    /// Off-site backups for `maintainer` as `config` says, with the credentials of the
    /// environment: checks the settings, reads the recipients and identity files and builds
    /// the client. Sends no request: a remote that is down does not stop anything from
    /// starting.
    pub fn open(
        maintainer: Arc<Maintainer>,
        config: &RemoteConfig,
    ) -> Result<Offsite, OpenRemoteError> {
        Offsite::open_with(maintainer, config, &Credentials::Environment)
    }

    /// [`Offsite::open`] with `credentials` given by the caller.
    pub fn open_with(
        maintainer: Arc<Maintainer>,
        config: &RemoteConfig,
        credentials: &Credentials,
    ) -> Result<Offsite, OpenRemoteError> {
        let bucket = Bucket::open(config, credentials)?;
        let recipients = if config.encryption_recipients.as_os_str().is_empty() {
            Vec::new()
        } else {
            read_recipients(&config.encryption_recipients)?
        };
        let identities = if config.identity_file.as_os_str().is_empty() {
            Vec::new()
        } else {
            read_identities(&config.identity_file)?
        };
        let status = RemoteHealth {
            url: bucket.url().to_string(),
            ..RemoteHealth::default()
        };
        // From now on local pruning keeps what is not shipped yet.
        maintainer.bound_log_pruning();
        Ok(Offsite {
            maintainer,
            config: config.clone(),
            bucket,
            encoding: Encoding {
                compression: config.compression,
                level: config.compression_level,
                recipients,
            },
            identities,
            status: Mutex::new(status),
            reading: Mutex::new(BTreeMap::new()),
            upload_lock: Mutex::new(()),
            ship_lock: Mutex::new(BTreeMap::new()),
        })
    }

    /// The maintainer.
    pub fn maintainer(&self) -> &Arc<Maintainer> {
        &self.maintainer
    }

    /// The settings.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// The off-site state: last upload, last failure, per-table objects and bytes.
    pub fn health(&self) -> RemoteHealth {
        self.status().clone()
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, RemoteHealth> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark backup `id` of `table` as being read until the guard drops.
    pub(crate) fn reading(&self, table: &str, id: &str) -> ReadingGuard<'_> {
        let key = (table.to_string(), id.to_string());
        *self
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        ReadingGuard { offsite: self, key }
    }

    /// Mark backup `id` of `table` as read, as a verify or a restore does, until the guard
    /// drops: a test holds it across a remote retention.
    #[cfg(feature = "testing")]
    pub fn hold_reading(&self, table: &str, id: &str) -> ReadingGuard<'_> {
        self.reading(table, id)
    }

    /// Whether a verify or restore is reading backup `id` of `table`.
    pub(crate) fn is_being_read(&self, table: &str, id: &str) -> bool {
        self.reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(table.to_string(), id.to_string()))
    }
}

/// A backup marked as being read by a verify or a restore; remote retention leaves it alone
/// until this drops.
#[derive(Debug)]
pub struct ReadingGuard<'a> {
    offsite: &'a Offsite,
    key: (String, String),
}

impl Drop for ReadingGuard<'_> {
    fn drop(&mut self) {
        let mut reading = self
            .offsite
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = reading.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                reading.remove(&self.key);
            }
        }
    }
}
