//! The replies of the admin protocol: an operation's typed result ([`OpResult`]), whose JSON
//! is the reply and `--json`'s output, or why it did not run ([`OpError`], sent as
//! `{"error": message}` with its status).

use compaction::remote::{RemoteBackupInfo, UploadPass};
use compaction::{
    BackupInfo, BackupRun, CompactionRun, HealthReport, OperationInfo, RecoveryReport,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an operation returns; its JSON is the result's own (no wrapper, no tag), read back
/// by [`Op::read_result`](super::Op::read_result).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OpResult {
    /// Of `Op::Status` (boxed: the largest result by far).
    Health(Box<HealthReport>),
    /// Of `Op::History`, oldest run first.
    History(Vec<CompactionRun>),
    /// Of `Op::Operations`, oldest first.
    Operations(Vec<OperationInfo>),
    /// Of `Op::Backups`.
    Backups(Vec<BackupInfo>),
    /// Of `Op::Compact`.
    Compaction(CompactionRun),
    /// Of `Op::Backup`.
    Backup(BackupRun),
    /// Of `Op::Restore` and `Op::RemoteRestore` (also when the restore did not succeed).
    Restore(RecoveryReport),
    /// Of `Op::RemoteBackups`.
    RemoteBackups(Vec<RemoteBackupInfo>),
    /// Of `Op::Upload`.
    Upload(UploadPass),
    /// Of `Op::RestoreAt`: one report per table restored.
    RestoreAt(Vec<RecoveryReport>),
}

impl OpResult {
    /// The JSON of the reply and of `--json`. Through a [`Value`], whose keys are sorted, as
    /// they always were.
    pub fn to_json(&self) -> Result<Value, OpError> {
        serde_json::to_value(self)
            .map_err(|e| OpError::new(500, format!("cannot encode the result: {e}")))
    }
}

/// An operation that did not run, with the HTTP status that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// 400 bad input, 404 no route or unknown table or backup, 405 wrong method, 409 busy,
    /// 500 anything else.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

/// The body of an error reply.
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    /// The message.
    error: String,
}

impl OpError {
    /// An error with `status`.
    pub fn new(status: u16, message: impl std::fmt::Display) -> OpError {
        OpError {
            status,
            message: message.to_string(),
        }
    }

    /// The JSON body of the error reply: `{"error": message}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!(ErrorBody {
            error: self.message.clone()
        })
    }

    /// The error an error reply says: its status, and the message of its body if the body is
    /// one (a proxy's page is not).
    pub fn from_reply(status: u16, body: &str) -> OpError {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(body) => OpError::new(status, body.error),
            Err(_) => OpError::new(status, format!("the daemon answered HTTP {status}")),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpError {}

#[cfg(test)]
mod tests {
    use super::OpError;

    #[test]
    fn error_replies_read_back() {
        let error = OpError::new(409, "a maintenance operation is running");
        let body = serde_json::to_string(&error.to_json()).unwrap();
        assert_eq!(OpError::from_reply(409, &body), error);
        assert_eq!(
            OpError::from_reply(502, "<html>bad gateway</html>").message,
            "the daemon answered HTTP 502"
        );
    }
}
