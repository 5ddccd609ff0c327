//! Writing a simulation folder (`lcsim simulate`): the arrays, the table, the figures of
//! [`crate::studies::simulate_figures`] and simulate.json, each file atomically.
//!
//! A simulation folder `output.dir/simulate-<name>` holds:
//!
//! ```text
//! config.toml         the resolved config
//! simulate.json       settings, seeds, version, params source, per-sample solver records (written last)
//! times.npy           (T,)              the output times (a uniform grid on [0, t_end], plus t_on)
//! samples.npy         (S,)              indices of the samples in the split;  labels.npy (S,) their classes
//! v.npy, e.npy        (S, T, n_h)       hidden units and the control they receive
//! y.npy, u_i.npy, u.npy  (S, T, n_y)    output units, integral controller, output control
//! psi_norm.npy, e_norm.npy, u_norm.npy, loss.npy   (S, T)   |psi|, |e|, |u| (L2) and L(y(t)) (unscaled)
//! trajectories.csv    wide: one row per (sample, time): sample,label,time,phase,v_0..,y_0..,
//!                     u_i_0..,u_0..,e_0..,psi_norm,e_norm,u_norm,loss   (phase: free | controlled)
//! figures/sample-<i>.png   hidden units, output units, |psi|, |e|, |u| and the loss over time
//! figures/sample-<i>-<layer>-maps.png   conv systems: a layer's feature maps, free vs controlled
//! ```

use super::simulate::{SampleTrajectory, Simulation, SimulationSettings};
use super::simulate_figures::{draw_feature_map_figures, draw_simulation_figures};
use crate::config::Config;
use crate::error::{invalid, io_error, LcsimError, Result};
use crate::io::npz::{write_npy, NpyArray};
use crate::run::{write_atomic, write_json};
use nalgebra::DMatrix;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The folder of a simulation: `output.dir/simulate-<name>`.
pub fn simulation_path(config: &Config, name: &str) -> PathBuf {
    config.output.dir.join(format!("simulate-{name}"))
}

/// Checks a simulation name: non-empty, no path separators, not `.`/`..`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(invalid(
            "name",
            format!("{name:?}"),
            "a non-empty folder name without path separators",
        ));
    }
    Ok(())
}

/// Refuses an existing folder (simulations are never overwritten).
pub fn ensure_new(path: &Path) -> Result<()> {
    if path.exists() {
        return Err(invalid(
            "name",
            path.display(),
            "a folder that does not exist yet (a simulation is never overwritten); choose another name or remove the folder",
        ));
    }
    Ok(())
}

/// Where the simulated network came from and how the simulation was asked for
/// (stored in simulate.json).
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    /// The simulation's name (folder `simulate-<name>`).
    pub name: String,
    /// The command line.
    pub command: String,
    /// "fresh network (model.seed = s)", a .npz path, or a run's params/checkpoint.
    pub params_source: String,
    /// The settings.
    pub settings: SimulationSettings,
}

/// The files written by [`write_simulation`].
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The folder.
    pub dir: PathBuf,
    /// Data files (config.toml, .npy, trajectories.csv, simulate.json).
    pub files: Vec<PathBuf>,
    /// Figures.
    pub figures: Vec<PathBuf>,
}

impl Written {
    /// Writes each array as `<name>.npy` and the table as trajectories.csv into the folder,
    /// atomically, and lists them.
    pub fn write_data(&mut self, arrays: Vec<(&str, NpyArray)>, table: &str) -> Result<()> {
        for (name, array) in arrays {
            let path = self.dir.join(format!("{name}.npy"));
            write_npy(&path, &array)?;
            self.files.push(path);
        }
        let csv_path = self.dir.join("trajectories.csv");
        write_atomic(&csv_path, table.as_bytes())?;
        self.files.push(csv_path);
        Ok(())
    }

    /// `paths` relative to the folder, as simulate.json lists them.
    pub fn relative_names(&self, paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .filter_map(|p| p.strip_prefix(&self.dir).ok())
            .map(|p| p.display().to_string())
            .collect()
    }
}

/// Creates `dir` (refusing an existing one) and writes config.toml, the .npy arrays,
/// trajectories.csv, the figures (when `config.output.figures`, in
/// `config.output.figure_format`) and, last, simulate.json (see the module doc). Every file
/// is written atomically.
pub fn write_simulation(
    dir: &Path,
    config: &Config,
    sim: &Simulation,
    provenance: &Provenance,
) -> Result<Written> {
    let mut written = create_simulation_dir(dir, config)?;
    written.write_data(simulation_arrays(sim), &trajectories_csv(sim))?;
    if config.output.figures {
        written.figures = draw_simulation_figures(
            &dir.join("figures"),
            sim,
            &provenance.name,
            provenance.settings.split,
            &provenance.settings.drawn_units(sim.n_hidden())?,
            config.output.figure_format,
        )?;
        written.figures.extend(draw_feature_map_figures(
            &dir.join("figures"),
            sim,
            &provenance.name,
            config.output.figure_format,
        )?);
    }
    let json_path = dir.join("simulate.json");
    let json = simulation_json(config, sim, provenance, &written);
    write_json(&json_path, &json)?;
    written.files.push(json_path);
    Ok(written)
}

/// Creates `dir` (refusing an existing one, also one made meanwhile by another process) and
/// writes config.toml into it.
pub fn create_simulation_dir(dir: &Path, config: &Config) -> Result<Written> {
    ensure_new(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    // create_dir (not _all) fails if another process made the folder meanwhile.
    std::fs::create_dir(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => ensure_new(dir).expect_err("the folder exists"),
        _ => LcsimError::Io {
            path: dir.to_path_buf(),
            source,
        },
    })?;
    let mut written = Written {
        dir: dir.to_path_buf(),
        ..Written::default()
    };
    let config_path = dir.join("config.toml");
    write_atomic(&config_path, config.to_toml().as_bytes())?;
    written.files.push(config_path);
    Ok(written)
}

/// The arrays of a simulation by file stem, shaped as in the module doc.
pub fn simulation_arrays(sim: &Simulation) -> Vec<(&'static str, NpyArray)> {
    let s = sim.trajectories.len();
    let t = sim.times.len();
    let cube = |get: &dyn Fn(&SampleTrajectory) -> &DMatrix<f64>| {
        let rows = sim.trajectories.first().map_or(0, |tr| get(tr).nrows());
        let data: Vec<f64> = sim
            .trajectories
            .iter()
            .flat_map(|tr| get(tr).as_slice().to_vec())
            .collect();
        NpyArray {
            shape: vec![s, t, rows],
            data,
        }
    };
    let plane = |get: &dyn Fn(&SampleTrajectory) -> &Vec<f64>| NpyArray {
        shape: vec![s, t],
        data: sim
            .trajectories
            .iter()
            .flat_map(|tr| get(tr).clone())
            .collect(),
    };
    let vector = |values: Vec<f64>| NpyArray {
        shape: vec![values.len()],
        data: values,
    };
    let mut arrays = vec![
        ("times", vector(sim.times.clone())),
        (
            "samples",
            vector(sim.samples.iter().map(|&i| i as f64).collect()),
        ),
        (
            "labels",
            vector(sim.labels.iter().map(|&i| i as f64).collect()),
        ),
        ("v", cube(&|tr| &tr.v)),
        ("y", cube(&|tr| &tr.y)),
        ("u_i", cube(&|tr| &tr.u_i)),
        ("u", cube(&|tr| &tr.u)),
        ("e", cube(&|tr| &tr.e)),
        ("psi_norm", plane(&|tr| &tr.psi_norm)),
        ("e_norm", plane(&|tr| &tr.e_norm)),
        ("u_norm", plane(&|tr| &tr.u_norm)),
        ("loss", plane(&|tr| &tr.loss)),
    ];
    for (name, m) in sim.feedback.iter().flat_map(|p| p.iter()) {
        let file = match name {
            "B" => "feedback_B",
            "G" => "feedback_G",
            _ => "feedback_Q",
        };
        // Row-major (C order) like every other array here.
        arrays.push((file, crate::io::interop::npy_from_matrix(m, true)));
    }
    arrays
}

/// trajectories.csv: one row per (sample, time), columns
/// `sample,label,time,phase,v_0..,y_0..,u_i_0..,u_0..,e_0..,psi_norm,e_norm,u_norm,loss`.
pub fn trajectories_csv(sim: &Simulation) -> String {
    let (n_h, n_y) = (sim.n_hidden(), sim.n_out());
    let mut header = vec![
        "sample".to_string(),
        "label".into(),
        "time".into(),
        "phase".into(),
    ];
    for (prefix, n) in [("v", n_h), ("y", n_y), ("u_i", n_y), ("u", n_y), ("e", n_h)] {
        header.extend((0..n).map(|i| format!("{prefix}_{i}")));
    }
    header.extend(["psi_norm", "e_norm", "u_norm", "loss"].map(String::from));
    let samples = sim.trajectories.iter().zip(&sim.samples).zip(&sim.labels);
    let rows = samples.flat_map(|((tr, &sample), &label)| {
        sim.times.iter().enumerate().map(move |(k, &t)| {
            let phase = if k < sim.switch_index {
                "free"
            } else {
                "controlled"
            };
            let mut row = vec![
                sample.to_string(),
                label.to_string(),
                t.to_string(),
                phase.into(),
            ];
            for m in [&tr.v, &tr.y, &tr.u_i, &tr.u, &tr.e] {
                row.extend(m.column(k).iter().map(|x| x.to_string()));
            }
            for values in [&tr.psi_norm, &tr.e_norm, &tr.u_norm, &tr.loss] {
                row.push(values[k].to_string());
            }
            row
        })
    });
    crate::io::csv_text::csv_text(header, rows)
}

/// The content of simulate.json.
fn simulation_json(
    config: &Config,
    sim: &Simulation,
    p: &Provenance,
    written: &Written,
) -> serde_json::Value {
    let last = sim.times.len().saturating_sub(1);
    let samples: Vec<serde_json::Value> = sim
        .trajectories
        .iter()
        .zip(&sim.samples)
        .zip(&sim.labels)
        .map(|((tr, &sample), &label)| {
            serde_json::json!({
                "sample": sample,
                "label": label,
                "free": tr.free,
                "controlled": tr.controlled,
                "loss_at_t_on": tr.loss.get(sim.switch_index),
                "loss_at_t_end": tr.loss[last],
                "psi_norm_at_t_end": tr.psi_norm[last],
                "H_at_t_end": 0.5 * tr.psi_norm[last].powi(2),
            })
        })
        .collect();
    let specific = serde_json::json!({
        "switch_index": sim.switch_index,
        "n_hidden": sim.n_hidden(),
        "n_out": sim.n_out(),
        "samples": samples,
        "shapes": {
            "times": "(T,)", "samples": "(S,)", "labels": "(S,)",
            "v": "(S, T, n_h)", "e": "(S, T, n_h)",
            "y": "(S, T, n_y)", "u_i": "(S, T, n_y)", "u": "(S, T, n_y)",
            "psi_norm": "(S, T)", "e_norm": "(S, T)", "u_norm": "(S, T)", "loss": "(S, T)",
            "trajectories.csv": "one row per (sample, time): sample,label,time,phase,v_*,y_*,u_i_*,u_*,e_*,psi_norm,e_norm,u_norm,loss",
        },
    });
    simulation_json_with(config, sim, p, written, specific)
}

/// simulate.json: what every simulation records (version, provenance, seeds, time units,
/// controller, loss, solver, points, files and figures), then the `specific` entries of the
/// system's kind (an object) added to it.
pub fn simulation_json_with(
    config: &Config,
    sim: &Simulation,
    p: &Provenance,
    written: &Written,
    specific: serde_json::Value,
) -> serde_json::Value {
    let mut json = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "name": p.name,
        "command": p.command,
        "params_source": p.params_source,
        "settings": p.settings,
        "model_seed": config.model.seed,
        "data_source": config.data.source.name(),
        "data_seed": config.data.seed,
        "time_units": "time units of dynamics.tau_v",
        "tau_v": config.dynamics.tau_v,
        "controller": config.controller_settings(),
        "loss": sim.loss.name(),
        "loss_scale": sim.loss_scale,
        "solver": config.solver.integrator().method.name(),
        "points": sim.times.len(),
        "files": written.relative_names(&written.files),
        "figures": written.relative_names(&written.figures),
    });
    if let (Some(all), serde_json::Value::Object(extra)) = (json.as_object_mut(), specific) {
        all.extend(extra);
    }
    json
}
