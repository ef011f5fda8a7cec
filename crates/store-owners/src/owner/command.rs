//! What travels on an owner's channel: [`Command`]s, and the read and write jobs that carry a
//! caller's closure to the owner thread and its answer back. A job runs on the owner thread;
//! its answer is sent only when the owner calls `finish`, after the owner has done what the
//! outcome requires (a durable commit, a status change).

use crossbeam_channel::Sender;
use store_core::{ReadError, ReadView, StoreSnapshot, WriteBatch, WriteError};

use crate::error::{CallError, MaintenanceError};
use crate::online::OnlineConfig;
use crate::report::{CompactReport, ReplaceReport, ReplaceRequest};

/// Where the answer to a maintenance command goes.
pub(crate) type Reply<T> = Sender<Result<T, MaintenanceError>>;

/// What an owner thread receives.
pub(crate) enum Command {
    Read(Box<dyn ReadJob>),
    Write(Box<dyn WriteJob>),
    Maintenance(Maintenance),
}

/// Maintenance commands every owner answers.
pub(crate) enum Maintenance {
    Snapshot(Reply<Box<dyn StoreSnapshot>>),
    CompactInPlace(Reply<CompactReport>),
    CompactOnline(OnlineConfig, Reply<CompactReport>),
    CheckIntegrity(Reply<()>),
    Replace(ReplaceRequest, Reply<ReplaceReport>),
    Reopen(Reply<()>),
    /// A snapshot for a scrub, with the identity of the file it reads.
    ScrubSnapshot(Reply<(Box<dyn StoreSnapshot>, FileId)>),
    /// A scrub found damage in `file`: report it if the table still serves that file.
    ScrubFound {
        detail: String,
        file: FileId,
        reply: Reply<bool>,
    },
}

/// Which file a table path named: (device, inode). Every new table file is renamed over the
/// path, so a different identity means the file was replaced.
pub(crate) type FileId = (u64, u64);

/// A read job: runs against the committed state; its answer is sent by `finish`, once the
/// owner has seen whether the store met corruption during the run.
pub(crate) trait ReadJob: Send {
    /// Run; returns the corruption the job's own result reports, if any.
    fn run(&mut self, view: &dyn ReadView) -> Option<String>;
    /// Answer the caller: with the job's result if `outcome` is `Ok`, else with the error.
    fn finish(self: Box<Self>, outcome: Result<(), CallError>);
}

/// The read job of [`crate::OwnerHandle::read`].
pub(crate) struct TypedReadJob<R, F> {
    /// Taken (and so dropped, with what it holds) when the job runs.
    pub(crate) f: Option<F>,
    pub(crate) result: Option<Result<R, ReadError>>,
    pub(crate) reply: Sender<Result<R, CallError>>,
}

impl<R, F> ReadJob for TypedReadJob<R, F>
where
    R: Send,
    F: FnOnce(&dyn ReadView) -> Result<R, ReadError> + Send,
{
    fn run(&mut self, view: &dyn ReadView) -> Option<String> {
        let f = self.f.take()?;
        let result = f(view);
        let corrupted = match &result {
            Err(ReadError::Corrupted(detail)) => Some(detail.clone()),
            _ => None,
        };
        self.result = Some(result);
        corrupted
    }

    fn finish(self: Box<Self>, outcome: Result<(), CallError>) {
        let reply = match (outcome, self.result) {
            (Ok(()), Some(r)) => r.map_err(CallError::from),
            (Ok(()), None) => Err(CallError::Panicked("read job produced no result".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone away; that is a normal event.
        let _ = self.reply.send(reply);
    }
}

/// A write job: runs inside the owner's open write transaction; its reply is sent only after
/// the transaction commits durably. It may run more than once (when another job of the same
/// batch panics, the batch is rolled back and the others re-run), so it must not have side
/// effects outside the batch.
pub(crate) trait WriteJob: Send {
    fn run(&mut self, batch: &mut dyn WriteBatch) -> Result<(), WriteError>;
    fn finish(self: Box<Self>, outcome: Result<(), CallError>);
}

/// The write job of [`crate::OwnerHandle::submit`].
pub(crate) struct TypedWriteJob<R, F> {
    pub(crate) f: F,
    pub(crate) result: Option<R>,
    pub(crate) reply: Sender<Result<R, CallError>>,
}

impl<R, F> WriteJob for TypedWriteJob<R, F>
where
    R: Send,
    F: FnMut(&mut dyn WriteBatch) -> Result<R, WriteError> + Send,
{
    fn run(&mut self, batch: &mut dyn WriteBatch) -> Result<(), WriteError> {
        self.result = Some((self.f)(batch)?);
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<(), CallError>) {
        let reply = match (outcome, self.result) {
            (Ok(()), Some(r)) => Ok(r),
            (Ok(()), None) => Err(CallError::Panicked("write job produced no result".into())),
            (Err(e), _) => Err(e),
        };
        // The caller may have gone away; that is a normal event.
        let _ = self.reply.send(reply);
    }
}
