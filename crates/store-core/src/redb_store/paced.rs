//! A `StorageBackend` that pays every byte it reads or writes to the maintenance I/O pacer:
//! for the work files a job opens whole (a backup's copy, a verification's work copy), whose
//! integrity check at open reads the entire file in one redb call that nothing outside can
//! pace. Lock methods pass straight through.

use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use super::{RedbStore, not_a_table};
use crate::error::OpenError;
use crate::fault::FaultBackend;
use crate::pace::Pacer;
use crate::store::StoreOptions;

impl RedbStore {
    /// Open the existing table file at `path` with every byte redb reads or writes paid to
    /// `pacer`, the integrity check at open included (with
    /// [`StoreOptions::check_integrity_on_open`]). For a job's work file: a table's own owner
    /// never opens its file this way.
    pub fn open_paced(
        path: &Path,
        options: &StoreOptions,
        pacer: Arc<Pacer>,
    ) -> Result<RedbStore, OpenError> {
        let options = StoreOptions {
            create_if_missing: false,
            ..options.clone()
        };
        if let Some(detail) = not_a_table(path, &options)? {
            return Err(OpenError::Missing {
                path: path.to_path_buf(),
                detail,
            });
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| OpenError::io(path, e))?;
        let inner: Box<dyn StorageBackend> = match &options.io_faults {
            Some(plan) => Box::new(
                FaultBackend::new(file, plan.clone()).map_err(|e| OpenError::from_redb(path, e))?,
            ),
            None => Box::new(FileBackend::new(file).map_err(|e| OpenError::from_redb(path, e))?),
        };
        Self::open_with_backend(path, PacedBackend { inner, pacer }, &options)
    }
}

/// `inner`, with each read and write paid to `pacer` after it is done.
#[derive(Debug)]
struct PacedBackend {
    inner: Box<dyn StorageBackend>,
    pacer: Arc<Pacer>,
}

impl StorageBackend for PacedBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)?;
        self.pacer.pace(out.len() as u64);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)?;
        self.pacer.pace(data.len() as u64);
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
