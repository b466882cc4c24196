//! The watcher: at start and every interval, ask Hasura whether its
//! metadata is consistent, and run the reload procedure when it is not.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::Service;
use crate::reload::Status;

/// Starts the watcher; it ends when the server stops.
pub fn spawn(service: Arc<Service>, interval: Duration) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            loop {
                tick(&service);
                if service.stop.wait_timeout(interval) {
                    return;
                }
            }
        })
}

/// One look at Hasura. An inconsistency is not reported as such: the
/// reload that follows (or the one in flight, joined) is.
fn tick(service: &Arc<Service>) {
    let checked = service.procedure.check();
    service.observe(&checked);
    match &checked.status {
        Status::Inconsistent(objects) => {
            log::info!(inconsistent_count = objects.len(); "Metadata is inconsistent, reloading.");
            let leader = Arc::clone(service);
            if service.flight.run(move || leader.reload()).is_none() {
                log::debug!("Reload skipped, the server is stopping.");
            }
        }
        Status::Consistent => {
            log::debug!(is_consistent = true; "Metadata checked.");
            service.reporters.report_served(&checked);
        }
        Status::Failed(_) => {
            checked.log();
            service.reporters.report_served(&checked);
        }
    }
}
