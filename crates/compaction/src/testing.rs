//! Test hooks, compiled only with the `testing` feature (never in the daemon's build): a
//! [`StepHook`] passed to every online compaction, and a [`RestoreFault`] that damages a
//! staged restore file. Set through [`crate::Maintainer::set_compaction_hook`] and
//! [`crate::Maintainer::inject_restore_fault`].

use std::path::Path;
use std::sync::Mutex;

use store_owners::StepHook;

/// A fault to inject into the next restores, for tests of what survives a restore that fails
/// half-way. Fired after the backup was verified and staged, before the owner swaps it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFault {
    /// Overwrite the staged copy with garbage: the owner's reopen fails.
    GarbleStagedCopy,
    /// Truncate the staged copy to nothing: it reopens as an empty table, whose record count
    /// does not match.
    TruncateStagedCopy,
}

/// The armed hooks of one maintainer.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// Passed to every online compaction.
    compaction: Mutex<Option<StepHook>>,
    /// Applied to every staged restore file.
    restore_fault: Mutex<Option<RestoreFault>>,
}

impl Hooks {
    pub(crate) fn set_compaction_hook(&self, hook: Option<StepHook>) {
        *self.compaction.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    pub(crate) fn compaction_hook(&self) -> Option<StepHook> {
        self.compaction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_restore_fault(&self, fault: Option<RestoreFault>) {
        *self.restore_fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Damage the staged restore file `staged` as the armed fault says (nothing when none is).
    pub(crate) fn damage_staged_copy(&self, staged: &Path) {
        let fault = *self.restore_fault.lock().unwrap_or_else(|p| p.into_inner());
        match fault {
            Some(RestoreFault::GarbleStagedCopy) => {
                let len = std::fs::metadata(staged).map(|m| m.len()).unwrap_or(4096);
                let _ = std::fs::write(staged, vec![0xA5u8; len as usize]);
            }
            Some(RestoreFault::TruncateStagedCopy) => {
                let _ = std::fs::write(staged, b"");
            }
            None => {}
        }
    }
}
