//! The watcher thread of the file sources: looks at the files every interval, logs a reload
//! once and a refused change once (not at every look), and ends when its source is dropped.

use std::fmt::Display;
use std::time::Duration;

/// Starts a thread named `name` that calls `look` every `interval`: `None` when the source is
/// gone (the thread ends), else whether the files changed and were taken, or why a change
/// was refused. `what` names the files in the log lines.
///
/// # Errors
/// The thread could not be started.
pub(crate) fn spawn<E: Display>(
    name: &str,
    what: String,
    interval: Duration,
    mut look: impl FnMut() -> Option<Result<bool, E>> + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut last_error = None;
            loop {
                std::thread::sleep(interval);
                match look() {
                    None => return,
                    Some(Ok(changed)) => {
                        if changed {
                            tracing::info!("reloaded {what}");
                        }
                        last_error = None;
                    }
                    Some(Err(error)) => {
                        let text = error.to_string();
                        if last_error.as_ref() != Some(&text) {
                            tracing::warn!(%error, "ignoring changed {what}; keeping the last good ones");
                            last_error = Some(text);
                        }
                    }
                }
            }
        })
        .map(drop)
}
