//! [`Uploader`]: the background thread that copies backups off-site. It subscribes to the
//! "backups" topic and runs an upload pass ([`Offsite::upload_pending`]) after every backup
//! run (scheduled or manual), and once at start to catch up; backup runs that end while a
//! pass is under way are folded into one more pass. Backups, compactions and the tables
//! never wait for it.
//!
//! Dropping the handle stops the thread: it is told to stop and given a few seconds to end
//! its pass, then abandoned (an upload cut short leaves no manifest, so nothing visible).

use std::sync::Arc;

use crossbeam_channel::{Receiver, select};

use super::offsite::Offsite;
use super::worker::Worker;
use crate::events::{Envelope, Event};

/// The upload thread; dropping it stops the thread (given a few seconds, then abandoned).
#[derive(Debug)]
pub struct Uploader {
    _worker: Worker,
}

impl Uploader {
    /// Start the upload thread of `offsite`.
    pub fn start(offsite: Arc<Offsite>) -> std::io::Result<Uploader> {
        let events = offsite.maintainer().events().subscribe();
        let worker = Worker::spawn("remote-upload", move |stop| run(&offsite, &events, stop))?;
        Ok(Uploader { _worker: worker })
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
