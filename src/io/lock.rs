//! One runner per folder: an advisory lock on `DIR/.lock` (the operating system's file lock,
//! `flock` on Unix), held while a run or a sweep runs. The system releases it when its process
//! ends, however it ends, so a lock left by a killed process never blocks: only a live holder
//! does. The lock file names its exclusive holder (process id, host, command, start time).

use crate::error::{io_error, LcsimError, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FolderLock {
    /// Keeps the lock: the system releases it when the file is closed.
    _file: File,
    pub path: PathBuf,
}

/// How a folder is locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// One holder and no shared ones: a run being trained, a whole sweep run locally.
    Exclusive,
    /// Any number of shared holders and no exclusive one: the single-run runners of one sweep
    /// (`sweep run --index`, a Slurm array's tasks).
    Shared,
}

/// Who holds an exclusive lock, as its lock file says.
fn holder_text(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another process (one taking the lock this moment, or `lcsim sweep run --index` runners or Slurm tasks, which share the lock and write no name)".into()
    } else {
        text.to_string()
    }
}

/// Takes the lock of `dir` without waiting. `what` names the folder's kind in the error
/// (e.g. "run folder"); a held lock is [`LcsimError::Locked`] naming the folder and holder.
pub fn lock_folder(dir: &Path, what: &str, mode: LockMode) -> Result<FolderLock> {
    let path = dir.join(LOCK_FILE);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path))?;
    let taken = match mode {
        LockMode::Exclusive => file.try_lock(),
        LockMode::Shared => file.try_lock_shared(),
    };
    match taken {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LcsimError::Locked {
                what: what.to_string(),
                dir: dir.to_path_buf(),
                holder: holder_text(&mut file),
            })
        }
        Err(TryLockError::Error(e)) => return Err(io_error(&path)(e)),
    }
    if mode == LockMode::Shared {
        // No exclusive holder can be alive now: its name, if any, is stale.
        file.set_len(0).map_err(io_error(&path))?;
    } else {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let command: Vec<String> = std::env::args().collect();
        let text = format!(
            "process {} on host {host}, since unix time {started}: {}\n",
            std::process::id(),
            command.join(" ")
        );
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(text.as_bytes()))
            .map_err(io_error(&path))?;
    }
    Ok(FolderLock { _file: file, path })
}

/// The holder of `dir`'s lock when one holds it now (exclusively or shared), else None.
pub fn lock_holder(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK_FILE);
    let mut file = File::options().read(true).write(true).open(path).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => Some(holder_text(&mut file)),
    }
}
