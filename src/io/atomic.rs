//! Atomic file writes: the content goes to a hidden temporary file beside the target, is
//! synced to disk and renamed over the target, so the target never holds a half-written file
//! and a failed write leaves none behind. Every file lcsim writes (arrays, run folders,
//! sweeps, tables) goes through here (the public form is [`crate::run::write_atomic`]).

use crate::io::npz::{io_error, NpyError};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), NpyError> {
    write_atomic(path, |file| {
        file.write_all(bytes).map_err(|e| io_error(path, e))
    })
}

/// Writes a file through `fill` under a temporary name in the same directory,
/// then renames it over `path`.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), NpyError>,
) -> Result<(), NpyError> {
    let temp = temp_path(path);
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| io_error(path, e))?;
    let written = fill(&mut file).and_then(|()| file.sync_all().map_err(|e| io_error(path, e)));
    drop(file); // close before renaming (required on Windows)
    let result = written.and_then(|()| fs::rename(&temp, path).map_err(|e| io_error(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp); // best effort: the error that matters is `result`
    }
    result
}

/// A fresh hidden name beside `path`: `.<name>.<pid>.<n>.tmp`.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// True for the name of a temporary file of an atomic write (`.NAME.PID.N.tmp`, figures'
/// `.NAME.PID.N.tmp.EXT`).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".tmp") || name.contains(".tmp."))
}

/// Removes the temporary files of interrupted atomic writes in `dir` (`.NAME.PID.N.tmp`,
/// figures' `.NAME.PID.N.tmp.EXT`); only safe while no other process writes there (the
/// folder's lock, [`crate::io::lock`]). Returns how many were removed.
pub fn remove_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            is_temp_name(&name) && e.file_type().is_ok_and(|t| t.is_file())
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}
