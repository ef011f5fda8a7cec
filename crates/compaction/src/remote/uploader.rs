//! [`Uploader`]: the background thread that copies backups off-site. It subscribes to the
//! "backups" topic and runs an upload pass ([`Offsite::upload_pending`]) after every backup
//! run (scheduled or manual), and once at start to catch up; backup runs that end while a
//! pass is under way are folded into one more pass. Backups, compactions and the tables
//! never wait for it.
//!
//! Dropping the handle stops the thread: it is told to stop and given a few seconds to end
//! its pass, then abandoned (an upload cut short leaves no manifest, so nothing visible).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select};

use super::offsite::Offsite;
use crate::events::{Envelope, Event};

/// How long a dropped [`Uploader`] waits for its thread.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The upload thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Uploader {
    /// Dropped to tell the thread to stop.
    stop: Option<Sender<()>>,
    /// Closed by the thread when it ends.
    ended: Receiver<()>,
    /// The thread, joined when it ends within [`STOP_GRACE`].
    thread: Option<JoinHandle<()>>,
}

impl Uploader {
    /// Start the upload thread of `offsite`.
    pub fn start(offsite: Arc<Offsite>) -> std::io::Result<Uploader> {
        let events = offsite.maintainer().events().subscribe();
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (ended_tx, ended_rx) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("remote-upload".into())
            .spawn(move || {
                run(&offsite, &events, &stop_rx);
                drop(ended_tx);
            })?;
        Ok(Uploader {
            stop: Some(stop_tx),
            ended: ended_rx,
            thread: Some(thread),
        })
    }
}

impl Drop for Uploader {
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

fn is_backup_run(envelope: &Envelope) -> bool {
    matches!(envelope.event, Event::BackupComplete { .. })
}

fn run(offsite: &Offsite, events: &Receiver<Envelope>, stop: &Receiver<()>) {
    offsite.upload_pending();
    loop {
        select! {
            recv(events) -> envelope => match envelope {
                Ok(envelope) if is_backup_run(&envelope) => {
                    // Fold the runs queued meanwhile into this pass.
                    while events.try_recv().is_ok() {}
                    offsite.upload_pending();
                }
                Ok(_) => {}
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        }
    }
}
