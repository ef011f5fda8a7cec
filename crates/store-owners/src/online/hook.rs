//! Test hooks of an online compaction: with the `testing` feature, `OnlineConfig::hook`
//! is called at each [`Step`] and can make that step fail (or kill the process there);
//! without it, [`Hooks`] is empty and every step simply goes on. Shipped builds (the daemon)
//! are made without the feature, so no test code can run in them.

use crate::error::MaintenanceError;

/// The steps of an online compaction at which `OnlineConfig::hook` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
// Without the `testing` feature nobody reads a step: the hook that would is not built.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub enum Step {
    /// Worker thread, between chunks of the snapshot copy (first call before any record is
    /// copied, with the fresh file just created). Carries the records copied so far.
    CopyChunk(u64),
    /// Worker thread: the fresh file holds the whole snapshot, durably; catch-up is next.
    Copied,
    /// Worker thread: a catch-up round is about to be applied to the fresh file.
    CatchUp,
    /// Owner thread, in the final pause: the last changed keys are about to be copied.
    FinalCopy,
    /// Owner thread, in the final pause: the fresh file is complete and durable and is about
    /// to be renamed over the table.
    Swap,
}

/// A function called at each [`Step`] of an online compaction (tests only).
#[cfg(feature = "testing")]
#[derive(Clone)]
pub struct StepHook(std::sync::Arc<dyn Fn(Step) -> Result<(), String> + Send + Sync>);

#[cfg(feature = "testing")]
impl StepHook {
    /// Wrap `f`: returning `Err(reason)` makes the step fail with that reason.
    pub fn new(f: impl Fn(Step) -> Result<(), String> + Send + Sync + 'static) -> StepHook {
        StepHook(std::sync::Arc::new(f))
    }
}

#[cfg(feature = "testing")]
impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook(..)")
    }
}

/// The hook of one compaction, as its owner and worker threads call it: the config's hook
/// with the `testing` feature, nothing without.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    #[cfg(feature = "testing")]
    pub(super) hook: Option<StepHook>,
}

impl Hooks {
    /// Run the hook at `step`; its `Err` fails the step as an I/O failure there would.
    pub(crate) fn at(&self, step: Step) -> Result<(), MaintenanceError> {
        #[cfg(feature = "testing")]
        if let Some(hook) = &self.hook {
            return (hook.0)(step).map_err(|reason| {
                MaintenanceError::Injected(format!("injected failure at {step:?}: {reason}"))
            });
        }
        let _ = step;
        Ok(())
    }
}
