//! The run folder: its files, the record in run.json, and verifying the past on resume.

use super::{write_atomic, write_json, Summary};
use crate::config::{changed_keys, hex, Config};
use crate::data::{Dataset, Split};
use crate::error::{invalid, io_error, LcsimError, Result};
use crate::io::interop::{matrix_from_npy, npy_from_matrix, save_params};
use crate::io::lock::{lock_folder, FolderLock, LockMode};
use crate::io::metrics::{read_csv, to_csv, EpochMetrics};
use crate::io::npz::{read_npz, write_npz, NpyArray};
use crate::optim::{Optimizer, OptimizerState};
use crate::system::params::Params;
use crate::train::{Trainable, TrainingState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `output.dir/run_name` for a new run, locked, and writes run.json (with the
    /// data's identity) and, last, config.toml: claiming the folder and locking it are one
    /// step, so of two processes creating the same folder at once exactly one proceeds and the
    /// other gets [`LcsimError::Locked`]. An automatic name (empty `output.name`) gets a suffix
    /// -2, -3, ... when taken. An existing folder with a chosen name is refused when it holds a
    /// run (finished: choose another output.name; unfinished: continue it with --resume) or
    /// files lcsim did not leave; one that only a failed start left (nothing but run.json,
    /// error.txt, the lock and temp files, no config.toml) is taken over.
    pub fn create(
        config: &Config,
        command_line: &str,
        data: Option<&DataIdentity>,
    ) -> Result<(RunDir, FolderLock)> {
        let dir = &config.output.dir;
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let base = config.run_name();
        let automatic = config.output.name.is_empty();
        // create_dir (not _all) claims the folder, so two runs started at once never share one.
        let mut k = 1;
        let (run, lock) = loop {
            let name = if k == 1 {
                base.clone()
            } else {
                format!("{base}-{k}")
            };
            let path = dir.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let run = RunDir { path };
                    let lock = run.lock()?;
                    break (run, lock);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && automatic => k += 1,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let run = RunDir { path };
                    let taken = |state: &str| {
                        invalid(
                            "output.name",
                            run.path.display(),
                            &format!("a folder that does not exist yet; it holds {state}; set --set output.name=... or remove it"),
                        )
                    };
                    if !run.path.is_dir() {
                        return Err(taken("a file"));
                    }
                    // Locked: another process is creating or training this run.
                    let lock = run.lock()?;
                    if run.path.join("config.toml").is_file() {
                        return Err(taken(if run.is_finished() {
                            "a finished run"
                        } else {
                            "an unfinished run (continue it with `lcsim train --resume DIR`)"
                        }));
                    }
                    if let Some(other) = run.foreign_file()? {
                        return Err(taken(&format!("{other}, which lcsim did not write")));
                    }
                    for f in ["run.json", "error.txt"] {
                        let path = run.path.join(f);
                        if path.exists() {
                            std::fs::remove_file(&path).map_err(io_error(&path))?;
                        }
                    }
                    break (run, lock);
                }
                Err(e) => return Err(io_error(&path)(e)),
            }
        };
        let record = RunRecord {
            lcsim_version: env!("CARGO_PKG_VERSION").into(),
            command: command_line.into(),
            model_seed: config.model.seed,
            training_seed: config.training.seed,
            data_seed: config.data.seed,
            started_unix_s: unix_now(),
            config_sha256: Some(config.fingerprint()),
            config: Some(config.flat()),
            data: data.cloned(),
            changes: Vec::new(),
            data_changes: Vec::new(),
        };
        run.write_record(&record)?;
        // Last: a folder with config.toml is a run (`--resume` continues it).
        write_atomic(&run.path.join("config.toml"), config.to_toml().as_bytes())?;
        Ok((run, lock))
    }

    /// The first entry of the folder that a failed start cannot have left (anything but
    /// run.json, error.txt, the lock and temp files), if any.
    fn foreign_file(&self) -> Result<Option<String>> {
        let entries = std::fs::read_dir(&self.path).map_err(io_error(&self.path))?;
        for entry in entries {
            let name = entry.map_err(io_error(&self.path))?.file_name();
            let name = name.to_string_lossy();
            let left = ["run.json", "error.txt", crate::io::lock::LOCK_FILE]
                .contains(&name.as_ref())
                || crate::io::atomic::is_temp_name(&name);
            if !left {
                return Ok(Some(name.into_owned()));
            }
        }
        Ok(None)
    }

    /// Takes the run folder's lock (one process trains a run at a time) and removes the
    /// temporary files that interrupted writes left behind.
    pub fn lock(&self) -> Result<FolderLock> {
        let lock = lock_folder(&self.path, "run folder", LockMode::Exclusive)?;
        crate::io::atomic::remove_temp_files(&self.path);
        crate::io::atomic::remove_temp_files(&self.path.join("figures"));
        Ok(lock)
    }

    /// run.json.
    pub fn record(&self) -> Result<RunRecord> {
        let path = self.path.join("run.json");
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        serde_json::from_str(&text)
            .map_err(|e| invalid(&path.display().to_string(), e, "the run.json lcsim wrote"))
    }

    fn write_record(&self, record: &RunRecord) -> Result<()> {
        write_json(&self.path.join("run.json"), record)
    }

    /// Opens an existing run folder and reads its config.toml.
    pub fn open(path: &Path) -> Result<(RunDir, Config)> {
        let config_path = path.join("config.toml");
        if !config_path.is_file() {
            // A run being created: config.toml is written last, under the lock.
            if let Some(holder) = crate::io::lock::lock_holder(path) {
                return Err(LcsimError::Locked {
                    what: "run folder".into(),
                    dir: path.to_path_buf(),
                    holder,
                });
            }
            return Err(invalid(
                "RUN_DIR",
                path.display(),
                "a run folder made by `lcsim train` (with config.toml)",
            ));
        }
        let config = Config::load(Some(&config_path), &[])?;
        Ok((
            RunDir {
                path: path.to_path_buf(),
            },
            config,
        ))
    }

    /// True once summary.json exists.
    pub fn is_finished(&self) -> bool {
        self.path.join("summary.json").is_file()
    }

    /// The figures folder (created on demand).
    pub fn figures_dir(&self) -> Result<PathBuf> {
        let dir = self.path.join("figures");
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(dir)
    }

    /// Records a completed epoch: metrics.csv, then checkpoint.npz (network, optimizer,
    /// epoch). A crash between the two leaves a metrics row that resume discards.
    pub fn save_epoch<S: Trainable>(&self, state: &TrainingState<S>) -> Result<()> {
        write_atomic(
            &self.path.join("metrics.csv"),
            to_csv(&state.history).as_bytes(),
        )?;
        let mut arrays: Vec<(String, NpyArray)> = Vec::new();
        let push = |arrays: &mut Vec<(String, NpyArray)>, prefix: &str, p: &Params| {
            for (name, m) in p.iter() {
                arrays.push((format!("{prefix}{name}"), npy_from_matrix(m, false)));
            }
        };
        push(&mut arrays, "param_", state.net.params());
        let scalar = |v: usize| NpyArray {
            shape: vec![],
            data: vec![v as f64],
        };
        let optimizers = [
            (Some(&state.optimizer), ""),
            (state.feedback_optimizer.as_ref(), "feedback_"),
        ];
        for (opt, prefix) in optimizers {
            let Some(opt) = opt.map(|o| o.state()) else {
                continue;
            };
            if let Some(m) = &opt.first_moment {
                push(&mut arrays, &format!("{prefix}moment1_"), m);
            }
            if let Some(v) = &opt.second_moment {
                push(&mut arrays, &format!("{prefix}moment2_"), v);
            }
            if !prefix.is_empty() {
                arrays.push((format!("{prefix}optimizer_step"), scalar(opt.step)));
            }
        }
        if let Some(fb) = &state.feedback {
            push(&mut arrays, "feedback_", fb);
        }
        let opt = state.optimizer.state();
        arrays.push((
            "epoch".into(),
            NpyArray {
                shape: vec![],
                data: vec![state.epochs_done() as f64],
            },
        ));
        arrays.push((
            "optimizer_step".into(),
            NpyArray {
                shape: vec![],
                data: vec![opt.step as f64],
            },
        ));
        let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
        write_npz(&self.path.join("checkpoint.npz"), &refs)?;
        Ok(())
    }

    /// The state after the last saved epoch (`fresh` gives the layout and settings); without
    /// a checkpoint, `fresh` itself.
    pub fn load_checkpoint<S: Trainable>(
        &self,
        mut fresh: TrainingState<S>,
    ) -> Result<TrainingState<S>> {
        let path = self.path.join("checkpoint.npz");
        if !path.is_file() {
            return Ok(fresh);
        }
        let arrays = read_npz(&path)?;
        let scalar = |name: &str| -> Result<usize> {
            arrays
                .get(name)
                .and_then(|a| a.data.first().copied())
                .map(|v| v as usize)
                .ok_or_else(|| LcsimError::MissingArray {
                    name: name.into(),
                    path: path.clone(),
                    required: "epoch, optimizer_step, param_*".into(),
                })
        };
        let read = |prefix: &str, layout: &Params| -> Result<Option<Params>> {
            if !arrays.contains_key(&format!("{prefix}{}", layout.names().next().unwrap_or(""))) {
                return Ok(None);
            }
            let mut out = layout.clone();
            for (i, name) in layout.names().enumerate() {
                let key = format!("{prefix}{name}");
                let a = arrays.get(&key).ok_or_else(|| LcsimError::MissingArray {
                    name: key.clone(),
                    path: path.clone(),
                    required: "every parameter tensor".into(),
                })?;
                let m = matrix_from_npy(&key, a)?;
                if m.shape() != layout.tensor(i).shape() {
                    return Err(LcsimError::Shape {
                        field: key,
                        expected: format!("{:?}", layout.tensor(i).shape()),
                        found: format!("{:?}", m.shape()),
                    });
                }
                *out.tensor_mut(i) = m;
            }
            Ok(Some(out))
        };
        let layout = fresh.net.params().clone();
        let params = read("param_", &layout)?.ok_or_else(|| LcsimError::MissingArray {
            name: "param_W".into(),
            path: path.clone(),
            required: "param_* tensors".into(),
        })?;
        *fresh.net.params_mut() = params;
        let state = OptimizerState {
            step: scalar("optimizer_step")?,
            first_moment: read("moment1_", &layout)?,
            second_moment: read("moment2_", &layout)?,
        };
        fresh.optimizer = Optimizer::from_state(fresh.optimizer.settings().clone(), state)?;
        if let Some(layout) = fresh.feedback.clone() {
            let names: Vec<&str> = layout.names().collect();
            let feedback = read("feedback_", &layout)?.ok_or_else(|| LcsimError::MissingArray {
                name: format!("feedback_{}", names[0]),
                path: path.clone(),
                required: format!("the controller's feedback weights {names:?}"),
            })?;
            if let Some(opt) = &fresh.feedback_optimizer {
                let state = OptimizerState {
                    step: scalar("feedback_optimizer_step")?,
                    first_moment: read("feedback_moment1_", &layout)?,
                    second_moment: read("feedback_moment2_", &layout)?,
                };
                fresh.feedback_optimizer =
                    Some(Optimizer::from_state(opt.settings().clone(), state)?);
            }
            fresh.feedback = Some(feedback);
        }
        let epoch = scalar("epoch")?;
        let history: Vec<EpochMetrics> = read_csv(&self.path.join("metrics.csv"))?
            .into_iter()
            .filter(|m| m.epoch <= epoch)
            .collect();
        if history.len() != epoch {
            return Err(invalid(
                "metrics.csv",
                format!("{} rows for {epoch} checkpointed epochs", history.len()),
                "one row per completed epoch",
            ));
        }
        fresh.history = history;
        Ok(fresh)
    }

    /// Writes params.npz and, last, summary.json.
    pub fn finish<S: Trainable>(&self, state: &TrainingState<S>, summary: &Summary) -> Result<()> {
        save_params(&self.path.join("params.npz"), &state.net)?;
        if let Some(fb) = &state.feedback {
            let arrays: Vec<(String, NpyArray)> = fb
                .iter()
                .map(|(n, m)| (n.to_string(), npy_from_matrix(m, true)))
                .collect();
            let refs: Vec<(&str, &NpyArray)> =
                arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
            write_npz(&self.path.join("feedback.npz"), &refs)?;
        }
        write_json(&self.path.join("summary.json"), summary)
    }
}

/// Keys whose values may change when a run is resumed, with `lcsim train --resume RUN --set
/// KEY=VALUE` (recorded in run.json's `changes`); every other key is the run's past. The data
/// folders may move (another machine, another path) because the data are verified by their
/// values ([`DataIdentity`]), not by where they are.
pub const RESUME_KEYS: [&str; 6] = [
    "training.epochs",
    "training.threads",
    "output.figures",
    "output.figure_format",
    "data.mnist_dir",
    "data.cifar_dir",
];

/// What run.json records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub lcsim_version: String,
    /// The command line that started the run.
    pub command: String,
    pub model_seed: u64,
    pub training_seed: u64,
    pub data_seed: u64,
    pub started_unix_s: u64,
    /// SHA-256 of the resolved config ([`Config::fingerprint`]) as config.toml holds it now
    /// (after the recorded `changes`); absent in folders of lcsim before 0.1 checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    /// The resolved config, key by key ([`Config::flat`]), to name what an edit changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// The identity of the data the run trains on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataIdentity>,
    /// Values of [`RESUME_KEYS`] changed on resume, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ConfigChange>,
    /// Data accepted on resume although they differ from `data` then
    /// (`--resume RUN --accept-data-change`), in order; `data` is the latest identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_changes: Vec<DataChange>,
}

/// Other data accepted on resume (`--accept-data-change`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataChange {
    pub from: DataIdentity,
    pub to: DataIdentity,
    /// Epochs completed when the change was made.
    pub after_epoch: usize,
    pub unix_s: u64,
}

/// The config a resume continues with, and run.json updated with its changes (None: no change).
#[derive(Clone, Debug)]
pub struct ResumedConfig {
    pub config: Config,
    pub record: Option<RunRecord>,
}

/// One change of a key on resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: String,
    pub from: String,
    pub to: String,
    /// Epochs completed when the change was made.
    pub after_epoch: usize,
    pub unix_s: u64,
}

/// The identity of a run's data: what they are and the SHA-256 of their values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataIdentity {
    /// e.g. "mnist: 10000 train / 2000 test, 784 inputs, 10 classes".
    pub description: String,
    /// SHA-256 over both splits' inputs, labels and targets (little-endian bytes).
    pub sha256: String,
}

impl DataIdentity {
    /// The identity of a loaded split.
    pub fn of(data: &Split) -> DataIdentity {
        let mut hash = Sha256::new();
        let mut add = |d: &Dataset| {
            hash.update((d.inputs.nrows() as u64).to_le_bytes());
            hash.update((d.inputs.ncols() as u64).to_le_bytes());
            hash.update((d.n_classes as u64).to_le_bytes());
            for v in d.inputs.as_slice() {
                hash.update(v.to_le_bytes());
            }
            for &l in &d.labels {
                hash.update((l as u64).to_le_bytes());
            }
            if let Some(targets) = &d.targets {
                for v in targets.as_slice() {
                    hash.update(v.to_le_bytes());
                }
            }
        };
        add(&data.train);
        add(&data.test);
        DataIdentity {
            description: format!(
                "{}: {} train / {} test, {} inputs, {} classes",
                data.train.name,
                data.train.len(),
                data.test.len(),
                data.train.inputs.nrows(),
                data.train.n_classes
            ),
            sha256: hex(&hash.finalize()),
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `key = value (was before)` items, comma separated.
fn describe_changes(changes: &[(String, String, String)]) -> String {
    changes
        .iter()
        .map(|(k, was, is)| format!("{k} = {is} (was {was})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl RunDir {
    /// The config to resume with: config.toml as the run recorded it, with `overrides`
    /// (keys of [`RESUME_KEYS`] only) applied and recorded in run.json. A config.toml edited
    /// by hand is refused, naming the keys that differ, unless `overrides` set exactly those
    /// keys to the edited values. Nothing is written: [`RunDir::apply_changes`] does, once
    /// the data are verified too.
    pub fn verify_config(&self, config: Config, overrides: &[String]) -> Result<ResumedConfig> {
        for o in overrides {
            let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim();
            if !RESUME_KEYS.contains(&key) {
                return Err(invalid(
                    "--set",
                    key,
                    &format!("with --resume, a key that may change on resume: one of {RESUME_KEYS:?} (the others are the run's past; start a new run to change them)"),
                ));
            }
        }
        let mut record = self.record()?;
        let wanted = if overrides.is_empty() {
            config.clone()
        } else {
            Config::load(Some(&self.path.join("config.toml")), overrides)?
        };
        let set: Vec<&str> = overrides
            .iter()
            .map(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim())
            .collect();
        // A folder of an lcsim that recorded no config: config.toml is all there is.
        let recorded = &record.config.clone().unwrap_or_else(|| config.flat());
        let edited = changed_keys(recorded, &config.flat());
        let unexplained: Vec<_> = edited
            .iter()
            .filter(|(k, _, _)| !set.contains(&k.as_str()))
            .cloned()
            .collect();
        if !unexplained.is_empty() {
            let may: Vec<String> = unexplained
                .iter()
                .filter(|(k, _, _)| RESUME_KEYS.contains(&k.as_str()))
                .map(|(k, _, is)| format!("--set {k}={is}"))
                .collect();
            let continue_with = if may.is_empty() {
                String::new()
            } else {
                format!(
                    "; or, to continue with the new value, `lcsim train --resume {} {}`",
                    self.path.display(),
                    may.join(" ")
                )
            };
            return Err(LcsimError::EditedPast {
                dir: self.path.clone(),
                what: format!(
                    "its config.toml differs from the config it was trained with (recorded in run.json): {}",
                    describe_changes(&unexplained)
                ),
                allowed: format!(
                    "config.toml as recorded: restore the old values{continue_with}; only {RESUME_KEYS:?} may change on resume, each recorded in run.json; start a new run to change the others"
                ),
            });
        }
        let changes = changed_keys(recorded, &wanted.flat());
        let epochs_done = self.epochs_done()?;
        if changes.is_empty() {
            return Ok(ResumedConfig {
                config: wanted,
                record: None,
            });
        }
        if wanted.training.epochs < epochs_done {
            return Err(invalid(
                "training.epochs",
                wanted.training.epochs,
                &format!(
                    "at least the {epochs_done} epochs {} has completed",
                    self.path.display()
                ),
            ));
        }
        let now = unix_now();
        record
            .changes
            .extend(changes.iter().map(|(k, from, to)| ConfigChange {
                key: k.clone(),
                from: from.clone(),
                to: to.clone(),
                after_epoch: epochs_done,
                unix_s: now,
            }));
        record.config_sha256 = Some(wanted.fingerprint());
        record.config = Some(wanted.flat());
        Ok(ResumedConfig {
            config: wanted,
            record: Some(record),
        })
    }

    /// Writes a resumed config's changes: config.toml, then run.json with the changes; a
    /// finished run given more epochs is unfinished again (its final files go first).
    /// Returns the config when there is training left to do.
    pub fn apply_changes(&self, resumed: ResumedConfig) -> Result<Option<Config>> {
        let ResumedConfig { config, record } = resumed;
        if let Some(record) = record {
            if config.training.epochs > self.epochs_done()? {
                for f in ["summary.json", "params.npz", "feedback.npz"] {
                    let path = self.path.join(f);
                    if path.exists() {
                        std::fs::remove_file(&path).map_err(io_error(&path))?;
                    }
                }
            }
            write_atomic(&self.path.join("config.toml"), config.to_toml().as_bytes())?;
            self.write_record(&record)?;
        }
        Ok((!self.is_finished()).then_some(config))
    }
    /// Refuses data whose identity (their values, wherever they are) differs from the one
    /// run.json recorded, unless `accept_change`: then records the change in `resumed`'s
    /// run.json (written by [`RunDir::apply_changes`]).
    pub fn verify_data(
        &self,
        data: &Split,
        accept_change: bool,
        resumed: &mut ResumedConfig,
    ) -> Result<()> {
        let Some(recorded) = self.record()?.data else {
            return Ok(());
        };
        let now = DataIdentity::of(data);
        if now.sha256 == recorded.sha256 {
            return Ok(());
        }
        if accept_change {
            let mut record = match resumed.record.take() {
                Some(record) => record,
                None => self.record()?,
            };
            record.data_changes.push(DataChange {
                from: recorded,
                to: now.clone(),
                after_epoch: self.epochs_done()?,
                unix_s: unix_now(),
            });
            record.data = Some(now);
            resumed.record = Some(record);
            return Ok(());
        }
        Err(LcsimError::EditedPast {
            dir: self.path.clone(),
            what: format!(
                "its data are not those it was trained on: now {} (SHA-256 {}), recorded in run.json {} (SHA-256 {})",
                now.description,
                &now.sha256[..12],
                recorded.description,
                &recorded.sha256[..recorded.sha256.len().min(12)]
            ),
            allowed: format!(
                "the data set the run started with (by value: it may have moved, see `--set data.mnist_dir=...`); start a new run for other data, or continue on them with `lcsim train --resume {} --accept-data-change` (recorded in run.json)",
                self.path.display()
            ),
        })
    }

    /// Epochs in checkpoint.npz (0 without one).
    fn epochs_done(&self) -> Result<usize> {
        let path = self.path.join("checkpoint.npz");
        if !path.is_file() {
            return Ok(0);
        }
        let arrays = read_npz(&path)?;
        Ok(arrays
            .get("epoch")
            .and_then(|a| a.data.first().copied())
            .map_or(0, |v| v as usize))
    }
}

/// On resume: the data folder of `config` (MNIST, CIFAR-10) exists, else an error naming its
/// key and how to give the folder the data moved to (they are verified by value).
pub(super) fn data_folder_exists(config: &Config, run: &Path) -> Result<()> {
    use crate::data::DataSource;
    let (key, folder) = match config.data.source {
        DataSource::Mnist | DataSource::FewshotMnist => ("data.mnist_dir", &config.data.mnist_dir),
        DataSource::Cifar10 => ("data.cifar_dir", &config.data.cifar_dir),
        _ => return Ok(()),
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(invalid(
        key,
        folder.display(),
        &format!(
            "the existing folder of the run's data; if they moved, `lcsim train --resume {} --set {key}=\"NEW\"` (recorded in run.json; the data are compared by value)",
            run.display()
        ),
    ))
}
