//! How far a long study is. The studies report each step of what they solve, `phase` (e.g.
//! "check: FD probe of H_alpha") and `done` of `total`, to one process-wide sink, as a logger
//! would; the binary installs a sink that draws a bar on stderr when stderr is a terminal
//! (training's bar, see `lcsim train`). Without a sink a report does nothing, so library users
//! and tests see no output.

use std::sync::OnceLock;

/// What receives the reports: `(phase, done, total)`.
pub type Sink = Box<dyn Fn(&str, usize, usize) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Installs the process's sink; false (and `sink` dropped) when one is installed already.
pub fn set_sink(sink: Sink) -> bool {
    SINK.set(sink).is_ok()
}

/// Reports that `done` of the `total` steps of `phase` are done.
pub fn report(phase: &str, done: usize, total: usize) {
    if let Some(sink) = SINK.get() {
        sink(phase, done, total);
    }
}
