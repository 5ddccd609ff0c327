//! Raw command-line flags (clap), each flag's documentation beside it, and their translation
//! into the library's validated settings (only with the cargo feature `cli`). The binary
//! (src/main.rs) parses [`Cli`], converts, calls the library once and prints.

mod common;
mod run;
mod studies;
mod sweep;

pub use common::*;
pub use run::*;
pub use studies::*;
pub use sweep::*;

use clap::{Parser, Subcommand};

/// The command line as typed, recorded in the files a command writes.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// lcsim: learning at equilibrium by the least-control principle, as coupled ODEs.
#[derive(Parser, Debug)]
#[command(name = "lcsim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network on a dataset (digits by default) with a least-control method (LCP-DI,
    /// -KP, -LF, -EBD) or a gradient baseline (RBP, BP);
    /// writes a run folder with config, metrics, checkpoints, parameters and figures.
    Train(TrainArgs),
    /// Print the config (the documented default, or a file with its overrides applied).
    Config(ConfigArgs),
    /// Re-render every figure of a run folder from its saved metrics.
    Plot(PlotArgs),
    /// Verify an installation or a setting: the LCP-DI update against finite differences of
    /// H_alpha, the RBP gradient against finite differences of L(phi0), the alignment of
    /// the two as alpha grows (spec 6), and the variants: LCP-EBD and LCP-KP with B = W^T,
    /// G = D^T against LCP-DI (spec 3.2, 3.4). Exits non-zero when a check fails.
    Check(CheckArgs),
    /// Free and controlled equilibria, LCP updates and RBP gradients for one batch of
    /// saved parameters and data; writes them to an .npz file.
    Equilibrium(EquilibriumArgs),
    /// Time course of chosen samples: the free relaxation from rest until --t-on, then the
    /// LCP-DI controller switched on at the state reached, until --t-end. Writes
    /// <output.dir>/simulate-NAME with the arrays (.npy), a table (trajectories.csv),
    /// simulate.json and one figure per sample. On a meta-learning run (model.kind = "meta")
    /// the samples are tasks: the inner fine-tuning flow phi(t) from theta, the learner's
    /// prediction at several times, the inner and query losses and |psi| against time.
    Simulate(SimulateArgs),
    /// Training throughput (samples/s over the first mini-batches, per thread count), the
    /// GFLOP/s of the batched controlled residual (and, for model.kind = "conv" or "deq", of
    /// each convolution's forward, transpose and weight gradient) and this machine's dgemm
    /// peak.
    Throughput(ThroughputArgs),
    /// Alignment study: for each least-control variant (DI, KP, LF, EBD) and each controller
    /// leak alpha, the cosine between its update and the negative RBP gradient and the norm
    /// ratio |update| / (beta |gradient|), on a fixed batch, for the config's untrained
    /// network (and initial feedback weights) and for trained runs (--run). Writes
    /// alignment.csv, alignment.json and a figure to --out.
    Align(AlignArgs),
    /// Whether the config's solver returns the controlled equilibrium its definition means
    /// (spec 2.2) on the weights of trained runs: each sample's equilibrium against the
    /// definition's reference (flow: the Tsit45 flow from phi0; branch: a fine continuation),
    /// counted as agreeing, flagged by the solver, or silent (exit non-zero on any silent
    /// one); and where the flow and branch equilibria differ. Writes agreement.csv and
    /// agreement.json to --out.
    Agree(AgreeArgs),
    /// The least-control principle across runs: mean control magnitude H and test loss over
    /// training, one panel per run folder, drawn from each run's metrics.csv. Writes
    /// h_and_test_loss.png (or .svg), h_and_test_loss.csv and compare.json to --out.
    Compare(CompareArgs),
    /// Parameter sweeps: plan runs over a grid and/or random samples of config keys, run
    /// them locally in parallel (resumable) or as a Slurm job array, collect the results.
    #[command(subcommand)]
    Sweep(SweepCommand),
}
