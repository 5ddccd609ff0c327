//! The `lcsim` command: parses the flags ([`lcsim::cli`]), converts them into the library's
//! validated settings, calls the library once per subcommand and prints.

use clap::Parser;
use lcsim::cli::{self, Cli, Command, SweepCommand};
use lcsim::config::Config;
use lcsim::error::Result;
use lcsim::run::{draw_run_figures, start_training, RunDir, StartedTraining, Training};
use lcsim::studies;
use lcsim::train::{BatchProgress, Observer, Outcome, Trainable, TrainingState};
use std::process::ExitCode;

/// Keeps freed blocks in the heap instead of returning them to the system: the kernels'
/// temporaries (faer's packing buffers among them) are then reused rather than mapped and
/// faulted in anew at every product (measured: the batched residual 30% faster).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => check(&args),
        Command::Train(args) => train(&args),
        Command::Config(args) => show_config(&args),
        Command::Plot(args) => plot(&args),
        Command::Equilibrium(args) => equilibrium(&args),
        Command::Simulate(args) => simulate(&args),
        Command::Throughput(args) => throughput(&args),
        Command::Align(args) => align(&args),
        Command::Agree(args) => agree(&args),
        Command::Compare(args) => compare(&args),
        Command::Sweep(cmd) => sweep(&cmd),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints one line of a study's report.
fn say(line: String) {
    println!("{line}");
}

/// The progress of a long study on stderr: a spinner with what is being solved and how far
/// ([`lcsim::studies::progress`]), drawn only when stderr is a terminal (indicatif hides it
/// otherwise, so redirected output holds no control characters); cleared when dropped.
struct StudyBar(indicatif::ProgressBar);

impl StudyBar {
    fn show() -> StudyBar {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let shown = bar.clone();
        lcsim::studies::progress::set_sink(Box::new(move |phase, done, total| {
            shown.set_message(format!("{phase} {}/{total}", (done + 1).min(total)));
        }));
        StudyBar(bar)
    }

    /// [`say`] without tearing the bar.
    fn say(&self, line: String) {
        self.0.suspend(|| say(line));
    }
}

impl Drop for StudyBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn check(args: &cli::CheckArgs) -> Result<ExitCode> {
    use studies::check::{render_json, render_text, run_checks};
    match args.system {
        cli::CheckSystem::Meta => return check_meta(args),
        cli::CheckSystem::Conv | cli::CheckSystem::Deq => return check_conv(args),
        cli::CheckSystem::Rate => {}
    }
    let settings = args.settings()?;
    let report = {
        let _bar = StudyBar::show();
        run_checks(&settings)?
    };
    if args.json {
        println!("{}", render_json(&settings, &report));
    } else {
        print!("{}", render_text(&settings, &report));
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `lcsim check --system conv|deq`: the checks on a small convolutional system.
fn check_conv(args: &cli::CheckArgs) -> Result<ExitCode> {
    use studies::check_conv::{render_conv_json, render_conv_text, run_conv_checks};
    let settings = args.conv_settings()?;
    let report = {
        let _bar = StudyBar::show();
        run_conv_checks(&settings)?
    };
    if args.json {
        println!("{}", render_conv_json(&settings, &report));
    } else {
        print!("{}", render_conv_text(&settings, &report));
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `lcsim check --system meta`: the checks on meta-learning's inner problem.
fn check_meta(args: &cli::CheckArgs) -> Result<ExitCode> {
    use studies::check_meta::{render_meta_json, render_meta_text, run_meta_checks};
    let settings = args.meta_settings()?;
    let report = {
        let _bar = StudyBar::show();
        run_meta_checks(&settings)?
    };
    if args.json {
        println!("{}", render_meta_json(&settings, &report));
    } else {
        print!("{}", render_meta_text(&settings, &report));
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One batch: free (and controlled) equilibria, LCP updates and RBP gradients.
fn equilibrium(args: &cli::EquilibriumArgs) -> Result<ExitCode> {
    use studies::batch_study::{equilibrium_study, write_batch_study};
    let job = args.job()?;
    let study = {
        let _bar = StudyBar::show();
        equilibrium_study(&job)?
    };
    print!("{study}");
    write_batch_study(&job.out, &study)?;
    println!(
        "wrote {} arrays to {}",
        study.arrays.len(),
        job.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Progress bar, per-epoch line and checkpoint after every epoch.
struct CliObserver {
    run: RunDir,
    bar: Option<indicatif::ProgressBar>,
    /// Meta-learning: the loss is the query loss after adaptation; no accuracy.
    meta: bool,
}

impl<S: Trainable> Observer<S> for CliObserver {
    fn on_batch(&mut self, p: &BatchProgress) {
        if let Some(bar) = &self.bar {
            if p.batch == 1 {
                bar.reset();
                bar.set_length(p.batches as u64);
            }
            bar.set_position(p.batch as u64);
            let (loss, quality) = if self.meta {
                ("query loss", String::new())
            } else {
                ("loss", format!(" acc {:.3}", p.accuracy))
            };
            let h = if p.mean_h.is_nan() {
                String::new()
            } else {
                format!(" H {:.3e}", p.mean_h)
            };
            bar.set_message(format!(
                "epoch {} {loss} {:.4}{quality}{h} steps {:.0} converged {:.0}%",
                p.epoch,
                p.loss,
                p.mean_steps,
                100.0 * p.fraction_converged
            ));
        }
    }

    fn on_warning(&mut self, message: &str) {
        let line = format!("warning: {message}");
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| eprintln!("{line}")),
            _ => eprintln!("{line}"),
        }
    }

    fn on_epoch(
        &mut self,
        state: &TrainingState<S>,
        m: &lcsim::io::metrics::EpochMetrics,
    ) -> Result<()> {
        self.run.save_epoch(state)?;
        let losses = if self.meta {
            format!(
                "meta-train query loss {:.4} | meta-test query loss {:.4}",
                m.train_loss, m.test_loss
            )
        } else {
            format!(
                "train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4}",
                m.train_loss, m.train_accuracy, m.test_loss, m.test_accuracy
            )
        };
        // The unconverged solves' reasons, when there are any.
        let reasons = match m.unconverged.map(|u| u.summary()) {
            Some(text) if !text.is_empty() => format!(" ({text})"),
            _ => String::new(),
        };
        let mut line = format!(
            "epoch {:>3}: {losses} | H {:.3e} | steps mean {:.0} max {:.0} | unconverged {:.1}%{reasons} | {:.1} s",
            m.epoch,
            m.mean_h,
            m.mean_steps,
            m.max_steps,
            100.0 * m.fraction_unconverged,
            m.wall_time_s
        );
        for (name, fraction) in [
            ("folds", m.fraction_folds),
            ("uncertified", m.fraction_uncertified),
        ] {
            if fraction > 0.0 {
                line.push_str(&format!(" | {name} {:.1}%", 100.0 * fraction));
            }
        }
        line.push_str(&diagnostics_text(&m.diagnostics));
        match &self.bar {
            // A hidden bar (output not a terminal) drops its println.
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => println!("{line}"),
        }
        Ok(())
    }
}

/// The diagnostics part of the epoch line (empty when they are off): basin switches, free
/// solves converged, the free Jacobian's spectral abscissa, the cosine to -grad L (NaN:
/// not measured for this method), and what could not be computed.
fn diagnostics_text(d: &lcsim::io::metrics::EpochDiagnostics) -> String {
    if d.fraction_free_converged.is_nan() && d.diagnostics_failed == 0 {
        return String::new();
    }
    let mut text = format!(
        "\n           diagnostics: basin switches {:.1}% | free converged {:.1}% | spectral abscissa {:.3e} | cos(update, -grad L) {:.4}",
        100.0 * d.fraction_basin_switch,
        100.0 * d.fraction_free_converged,
        d.free_spectral_abscissa,
        d.alignment_cosine
    );
    if d.diagnostics_failed > 0 || !d.failure.is_empty() {
        text.push_str(&format!(
            " | not computable on {} samples ({})",
            d.diagnostics_failed, d.failure
        ));
    }
    text
}

/// Training throughput at each thread count, the batched kernel's GFLOP/s and the dgemm peak.
fn throughput(args: &cli::ThroughputArgs) -> Result<ExitCode> {
    let lines: fn(String) = if args.json { |_| {} } else { say };
    let report = studies::throughput::throughput(&args.job()?, lines)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).expect("the report serialises");
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn train(args: &cli::TrainArgs) -> Result<ExitCode> {
    let Some(started) = start_training(args.start()?)? else {
        // Only a run to resume can be finished already.
        if let Some(dir) = &args.resume {
            println!("{} is finished; nothing to resume", dir.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    match started {
        StartedTraining::Rate(t) => train_system(args, t, |_, _, _, _, _| Ok(None)),
        StartedTraining::Conv(t) => train_system(args, *t, |_, _, _, _, _| Ok(None)),
        StartedTraining::Deq(t) => train_system(args, *t, |_, _, _, _, _| Ok(None)),
        StartedTraining::Meta(t) => {
            train_system(args, t, |run, config, data, state, stop| {
                if config.output.figures {
                    let format = config.output.figure_format;
                    match lcsim::run::draw_adapted_fits(run, config, &state.net, format) {
                        Ok(Some(path)) => say(format!("figure:  {}", path.display())),
                        Ok(None) => {}
                        Err(e) => eprintln!("warning: adapted fits not drawn ({e})"),
                    }
                }
                say("meta-test: fine-tuning on the new tasks from the trained and the initial theta".into());
                lcsim::train::meta::meta_test(config, &state.net, &data.test, stop)
            })
        }
    }
}

/// Trains a started run, then finishes it with `meta_test`'s extra results.
fn train_system<S: Trainable>(
    args: &cli::TrainArgs,
    t: Training<S>,
    meta_test: impl Fn(
        &RunDir,
        &Config,
        &lcsim::data::Split,
        &TrainingState<S>,
        &std::sync::atomic::AtomicBool,
    ) -> Result<Option<lcsim::train::meta::MetaTest>>,
) -> Result<ExitCode> {
    let (run, config, data) = (&t.run, &t.config, &t.data);
    let (done, epochs) = (t.state.epochs_done(), config.training.epochs);
    let epochs_text = match done {
        0 => format!("epochs 1..{epochs}"),
        d if d < epochs => format!("epochs {}..{epochs} (resumed after epoch {d})", d + 1),
        d => format!("all {d} epochs done (finishing)"),
    };
    println!(
        "lcsim {} train: {} on {} ({} train / {} test), {}, {epochs_text}, run folder {}",
        env!("CARGO_PKG_VERSION"),
        config.method.name.name(),
        data.train.name,
        data.train.len(),
        data.test.len(),
        config.system_text(),
        run.path.display()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst));
    }
    let bar = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new(t.batches as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} batches {elapsed_precise} {msg}",
            )
            .expect("valid template"),
        );
        // The clock moves while a long batch solves; the message says what is being solved.
        bar.enable_steady_tick(std::time::Duration::from_millis(500));
        bar.set_message(format!(
            "epoch {}: solving the first batch ({} samples, solver {})",
            done + 1,
            config.training.batch_size,
            config.solver.method.name()
        ));
        bar
    });
    let mut observer = CliObserver {
        run: run.clone(),
        bar,
        meta: config.model.kind == lcsim::config::ModelKind::Meta,
    };
    let (state, outcome) = lcsim::train::train(config, data, t.state, &mut observer, &stop)?;
    if let Some(bar) = &observer.bar {
        bar.finish_and_clear();
    }
    if outcome == Outcome::Interrupted {
        let kept = match state.epochs_done() {
            0 => "no epoch was completed yet".to_string(),
            n => format!("epochs 1..{n} are kept"),
        };
        println!(
            "interrupted before epoch {} was completed ({kept}); continue with: lcsim train --resume {}",
            state.epochs_done() + 1,
            run.path.display()
        );
        return Ok(ExitCode::from(130));
    }
    let meta = meta_test(run, config, data, &state, &stop)?;
    let finished = lcsim::run::finish_run(run, config, &state, meta)?;
    if let Some(e) = &finished.figure_error {
        eprintln!(
            "warning: figures not drawn ({e}); retry with `lcsim plot {}`",
            run.path.display()
        );
    }
    let (summary, figures) = (&finished.summary, &finished.summary.figures);
    match &summary.meta_test {
        Some(m) => {
            let accuracy = m.accuracy.as_ref().map_or(String::new(), |a| {
                format!(
                    "; accuracy {:.4} +- {:.4}, before adaptation {:.4}, from the initial theta {:.4} +- {:.4}",
                    a.accuracy,
                    a.accuracy_ci95,
                    a.accuracy_before_adaptation,
                    a.initial_theta_accuracy,
                    a.initial_theta_accuracy_ci95
                )
            });
            let loss = match m.accuracy {
                Some(_) => "cross-entropy",
                None => "MSE",
            };
            println!(
                "done after {} epochs: meta-test {loss} {:.4} +- {:.4} (95%) on {} new tasks; before adaptation {:.4}; from the initial theta (no meta-learning) {:.4} +- {:.4}{accuracy}",
                summary.epochs,
                m.query_loss,
                m.query_loss_ci95,
                m.tasks,
                m.query_loss_before_adaptation,
                m.initial_theta_query_loss,
                m.initial_theta_query_loss_ci95
            )
        }
        None => println!(
            "done: test accuracy {:.4}, test loss {:.4} after {} epochs",
            summary.final_test_accuracy, summary.final_test_loss, summary.epochs
        ),
    }
    println!("results: {}", run.path.display());
    for f in figures {
        println!("figure:  {}", run.path.join(f).display());
    }
    Ok(ExitCode::SUCCESS)
}

fn show_config(args: &cli::ConfigArgs) -> Result<ExitCode> {
    if args.source.config.is_none() && args.source.overrides.is_empty() {
        print!("{}", Config::default_toml());
    } else {
        print!("{}", args.source.load()?.to_toml());
    }
    Ok(ExitCode::SUCCESS)
}

fn plot(args: &cli::PlotArgs) -> Result<ExitCode> {
    let (run, config) = RunDir::open(&args.run_dir)?;
    let rows = lcsim::io::metrics::read_csv(&run.path.join("metrics.csv"))?;
    let format = args.format.unwrap_or(config.output.figure_format);
    for f in draw_run_figures(&run, &rows, format)? {
        println!("figure: {}", run.path.join(f).display());
    }
    if config.model.kind == lcsim::config::ModelKind::Meta {
        let net = lcsim::run::trained_meta_system(&run, &config)?;
        if let Some(path) = lcsim::run::draw_adapted_fits(&run, &config, &net, format)? {
            println!("figure: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn simulate(args: &cli::SimulateArgs) -> Result<ExitCode> {
    let job = args.job()?;
    let bar = StudyBar::show();
    studies::simulate_job::simulate(&job, |l| bar.say(l)).map_err(cli::rename_simulate_field)?;
    Ok(ExitCode::SUCCESS)
}

/// The alignment study (see `lcsim align --help`).
fn align(args: &cli::AlignArgs) -> Result<ExitCode> {
    let job = args.job()?;
    let bar = StudyBar::show();
    studies::alignment_study::align(&job, |l| bar.say(l))?;
    Ok(ExitCode::SUCCESS)
}

/// The solver against its equilibrium definition's reference (see `lcsim agree --help`).
fn agree(args: &cli::AgreeArgs) -> Result<ExitCode> {
    let job = args.job()?;
    let result = {
        let bar = StudyBar::show();
        studies::agreement::agreement(&job, |l| bar.say(l))?
    };
    println!(
        "wrote {} and {}",
        result.csv.display(),
        result.json.display()
    );
    let silent = result.silent();
    if silent > 0 {
        eprintln!(
            "error: {silent} sample(s) where the solver reported convergence on an equilibrium other than its definition's reference (see verdict = silent in {})",
            result.csv.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// H and test loss over training for several runs (see `lcsim compare --help`).
fn compare(args: &cli::CompareArgs) -> Result<ExitCode> {
    print!("{}", studies::compare::compare(&args.job())?);
    Ok(ExitCode::SUCCESS)
}

fn sweep(cmd: &SweepCommand) -> Result<ExitCode> {
    match cmd {
        SweepCommand::Plan(args) => sweep_plan(args),
        SweepCommand::Run(args) => sweep_run(args),
        SweepCommand::Slurm(args) => sweep_slurm(args),
        SweepCommand::Collect(args) => sweep_collect(args),
    }
}

fn sweep_plan(args: &cli::SweepPlanArgs) -> Result<ExitCode> {
    lcsim::sweep::plan_command(&args.settings())?;
    Ok(ExitCode::SUCCESS)
}

fn sweep_run(args: &cli::SweepRunArgs) -> Result<ExitCode> {
    let settings = lcsim::sweep::RunSettings {
        dir: args.dir.clone(),
        index: args.index,
        jobs: args.jobs,
        slurm_task_id: std::env::var("SLURM_ARRAY_TASK_ID").ok(),
        exe: lcsim::sweep::this_exe()?,
    };
    let status = lcsim::sweep::run_command(&settings, lcsim::sweep::stop_on_ctrl_c)?;
    Ok(ExitCode::from(status))
}

fn sweep_slurm(args: &cli::SweepSlurmArgs) -> Result<ExitCode> {
    let settings = lcsim::sweep::SubmitSettings {
        dir: args.dir.clone(),
        script: lcsim::sweep::SlurmSettings {
            partition: args.partition.clone(),
            time: args.time.clone(),
            cpus_per_task: args.cpus_per_task,
            max_parallel: args.max_parallel,
            exe: lcsim::sweep::this_exe()?,
        },
        submit: args.submit,
        wait: args.wait,
    };
    Ok(ExitCode::from(lcsim::sweep::slurm_command(&settings)?))
}

fn sweep_collect(args: &cli::SweepCollectArgs) -> Result<ExitCode> {
    let mut settings = lcsim::sweep::FigureSettings {
        x: args.x.clone(),
        y: args.y.clone(),
        format: args.format,
        title: args.title.clone(),
        ..lcsim::sweep::FigureSettings::default()
    };
    if !args.metric.is_empty() {
        settings.metrics = args.metric.clone();
    }
    lcsim::sweep::collect_command(&args.dir, &settings)?;
    Ok(ExitCode::SUCCESS)
}
