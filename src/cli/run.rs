//! The flags of the run-folder subcommands: train, config, plot.

use super::ConfigSource;
use crate::error::Result;
use crate::run::TrainStart;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Continue the unfinished run in this folder from its last completed epoch. Its
    /// config.toml must be the one it was trained with; with --resume, --set changes only
    /// training.epochs, training.threads, output.figures, output.figure_format and the data
    /// folders data.mnist_dir, data.cifar_dir (recorded in run.json), e.g. --resume RUN --set
    /// training.epochs=20 (a finished run too). The data must be those the run started with
    /// (compared by value, wherever they are).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// With --resume: continue although the data differ from those the run was trained on
    /// (recorded in run.json's data_changes).
    #[arg(long, requires = "resume")]
    pub accept_data_change: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// A new run of the config (loaded and validated here), or the run to resume.
    pub fn start(&self) -> Result<TrainStart> {
        Ok(match &self.resume {
            Some(dir) => TrainStart::Resume {
                dir: dir.clone(),
                overrides: self.source.overrides.clone(),
                accept_data_change: self.accept_data_change,
            },
            None => TrainStart::New {
                config: Box::new(self.source.load()?),
                command: super::command_line(),
            },
        })
    }
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub source: ConfigSource,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A run folder made by `lcsim train`.
    pub run_dir: PathBuf,
    /// Figure format (default: the run's output.figure_format).
    #[arg(long, value_enum)]
    pub format: Option<crate::plot::FigureFormat>,
}
