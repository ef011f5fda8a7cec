//! [`Worker`]: a named background thread of the off-site module that is told to stop, given
//! a few seconds to end its pass, then abandoned: a bucket that hangs must never hold up a
//! shutdown. The [`super::Uploader`] and the [`super::Shipper`] are each one.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

/// How long a dropped [`Worker`] waits for its thread.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The thread; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Worker {
    /// Dropped to tell the thread to stop.
    stop: Option<Sender<()>>,
    /// Closed by the thread when it ends.
    ended: Receiver<()>,
    /// The thread, joined when it ends within [`STOP_GRACE`].
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Run `body` on a thread named `name`; it is handed the channel that closes when the
    /// worker is dropped.
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce(&Receiver<()>) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (ended_tx, ended_rx) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                body(&stop_rx);
                drop(ended_tx);
            })?;
        Ok(Worker {
            stop: Some(stop_tx),
            ended: ended_rx,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        let _ = self.ended.recv_timeout(STOP_GRACE);
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}
