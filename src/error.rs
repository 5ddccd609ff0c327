//! Error type of the library: every failure names the field, the value and what is allowed.

use std::path::PathBuf;

/// Errors of lcsim. Numerical non-convergence is *not* an error: it is a reported
/// [`crate::solve::Termination`].
#[derive(Debug, thiserror::Error)]
pub enum LcsimError {
    /// A setting or argument outside its allowed range.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    InvalidValue {
        field: String,
        value: String,
        allowed: String,
    },
    /// An array whose shape does not fit the model or the other arrays.
    #[error("shape mismatch for `{field}`: expected {expected}, found {found}")]
    Shape {
        field: String,
        expected: String,
        found: String,
    },
    /// A NaN or infinite entry in user data.
    #[error(
        "non-finite value {value} in `{field}` at flat index {index} (all entries must be finite)"
    )]
    NonFinite {
        field: String,
        index: usize,
        value: f64,
    },
    /// An optimizer step whose result (a parameter or an optimizer moment) is not finite;
    /// the step was refused and nothing was changed.
    #[error(
        "non-finite {what} `{tensor}` after optimizer step {step}: {value} at flat index {index} (the step was refused; allowed: finite values, e.g. with a lower training.learning_rate or training.weight_decay, or training.clip_norm > 0)"
    )]
    NonFiniteUpdate {
        /// "parameter", "first moment" or "second moment".
        what: String,
        tensor: String,
        step: usize,
        index: usize,
        value: f64,
    },
    /// A training failure located at its mini-batch.
    #[error("training stopped at epoch {epoch}, batch {batch} of {batches}: {source}")]
    AtBatch {
        epoch: usize,
        batch: usize,
        batches: usize,
        source: Box<LcsimError>,
    },
    /// A solve that did not converge while `method.on_unconverged = "stop"`.
    #[error("a solve ended {termination} after {steps} steps (t = {time:.3e}, residual {residual:.3e}) and method.on_unconverged = \"stop\" stops training on it (allowed: {remedy})")]
    Unconverged {
        termination: String,
        steps: usize,
        time: f64,
        residual: f64,
        /// The limit to raise (the real key), or the other settings that help.
        remedy: String,
    },
    /// A config whose estimated memory exceeds what may be used.
    #[error("{task} would need about {estimate} of memory, more than {limit} ({what}); refused before anything is written (allowed: smaller {keys})")]
    Resources {
        /// What would need it: "the run", "the check", "the simulation".
        task: String,
        estimate: String,
        limit: String,
        what: String,
        keys: String,
    },
    /// An epoch in which no mini-batch changed the parameters: the run did no work.
    #[error("training stopped at epoch {epoch}: no sample produced an update ({reasons}); the run is not marked finished")]
    NoUpdate { epoch: usize, reasons: String },
    /// A folder another live process is running in (its advisory lock is held).
    #[error("{what} {dir} is in use by {holder}; one runner at a time (allowed: wait for it to end, or stop it; a lock of a process that ended is released by itself)", dir = dir.display())]
    Locked {
        what: String,
        dir: PathBuf,
        holder: String,
    },
    /// A run folder whose config.toml (or data) is not the one its run started with.
    #[error("cannot resume {dir}: {what} (allowed: {allowed})", dir = dir.display())]
    EditedPast {
        dir: PathBuf,
        what: String,
        allowed: String,
    },
    /// A required array is absent from a file.
    #[error("missing array `{name}` in {path} (required arrays: {required})")]
    MissingArray {
        name: String,
        path: PathBuf,
        required: String,
    },
    /// Reading or writing a .npy/.npz file failed.
    #[error(transparent)]
    Npy(#[from] crate::io::npz::NpyError),
    /// Any other I/O failure.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LcsimError {
    /// True for a non-finite gradient, parameter or optimizer moment met by an optimizer
    /// step (which then changed nothing).
    pub fn is_non_finite_update(&self) -> bool {
        match self {
            LcsimError::NonFiniteUpdate { .. } => true,
            LcsimError::NonFinite { field, .. } => {
                field.starts_with("gradient") || field.starts_with("parameters")
            }
            LcsimError::InvalidValue { field, .. } => field.starts_with("gradient"),
            _ => false,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, LcsimError>;

/// Shorthand for [`LcsimError::InvalidValue`]; a value longer than [`VALUE_SHOWN`]
/// characters is shortened (a two-million-entry list stays a one-line message).
pub fn invalid(field: &str, value: impl std::fmt::Display, allowed: &str) -> LcsimError {
    LcsimError::InvalidValue {
        field: field.to_string(),
        value: shortened(&value.to_string()),
        allowed: allowed.to_string(),
    }
}

/// Characters of a value an error message shows.
pub const VALUE_SHOWN: usize = 200;

/// `text` cut to [`VALUE_SHOWN`] characters, saying how long it was.
fn shortened(text: &str) -> String {
    let n = text.chars().count();
    if n <= VALUE_SHOWN {
        return text.to_string();
    }
    let head: String = text.chars().take(VALUE_SHOWN).collect();
    format!("{head}... ({n} characters)")
}

/// Shorthand for [`LcsimError::Io`] on `path`, for `map_err`.
pub fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LcsimError + '_ {
    move |source| LcsimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that a scalar setting is finite and strictly positive.
pub fn ensure_positive(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, value, "a finite number > 0"))
    }
}

/// Checks that a scalar setting is finite and non-negative.
pub fn ensure_non_negative(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field, value, "a finite number >= 0"))
    }
}

/// The most worker threads (or parallel runs) any setting may ask for.
pub const MAX_THREADS: usize = 1024;

/// Exit status of a command refused because another process holds its folder's lock
/// ([`LcsimError::Locked`]; 75 is EX_TEMPFAIL of sysexits.h: try again later). Every other
/// error exits with 2.
pub const EXIT_BUSY: u8 = 75;

impl LcsimError {
    /// The exit status of a command that ends with this error: [`EXIT_BUSY`] or 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            LcsimError::Locked { .. } => EXIT_BUSY,
            _ => 2,
        }
    }
}

/// Checks a thread count where 0 means all cores: `0..=MAX_THREADS`.
pub fn ensure_thread_count(field: &str, value: usize) -> Result<()> {
    if value <= MAX_THREADS {
        Ok(())
    } else {
        Err(invalid(
            field,
            value,
            &format!("an integer in 0..={MAX_THREADS} (0 = all cores)"),
        ))
    }
}

/// Checks that every entry of a data array is finite.
pub fn ensure_finite(field: &str, values: &[f64]) -> Result<()> {
    // A pass without early exit (it vectorises); the position only on failure.
    if values.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(LcsimError::NonFinite {
            field: field.to_string(),
            index,
            value: values[index],
        }),
    }
}
