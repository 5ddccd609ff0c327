//! The `lcsim` command: parses flags (cli.rs), validates them into library settings and
//! runs the library.

mod cli;

use clap::Parser;
use cli::{
    least_control_run, rename_simulate_field, AlignArgs, CheckArgs, Cli, Command, CompareArgs,
    ConfigArgs, EquilibriumArgs, EquilibriumMethod, ModelKind, PlotArgs, SimulateArgs,
    SweepCommand, ThroughputArgs, TrainArgs,
};
use lcsim::config::Config;
use lcsim::control::{CoupledSystem, Objective};
use lcsim::error::{LcsimError, Result};
use lcsim::io::interop::{load_inputs, load_params, load_targets};
use lcsim::run::{draw_run_figures, RunDir};
use lcsim::studies::batch_study::{
    equilibrium_arrays, write_batch_study, BatchMethod, BatchSettings,
};
use lcsim::studies::check::{run_checks, CheckReport, CheckSettings};
use lcsim::system::rate::RateNetwork;
use lcsim::train::{load_split, BatchProgress, Observer, Outcome, TrainingState};
use nalgebra::DMatrix;
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
        Command::Compare(args) => compare(&args),
        Command::Sweep(cmd) => sweep(&cmd),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(args: &CheckArgs) -> Result<ExitCode> {
    let settings = CheckSettings {
        n_x: args.inputs,
        topology: args.topology()?,
        n_y: args.outputs,
        batch: args.batch,
        seed: args.seed,
        activation: args.activation,
        loss: args.loss.loss,
        loss_scale: args.loss.loss_scale,
        tau_v: args.dynamics.tau_v,
        controller: args.dynamics.controller()?,
        alphas: args.alphas.clone(),
        fd_step: args.fd_step,
        solver: args.solver.options()?,
        fd_tolerance: args.fd_tolerance,
        cosine_tolerance: args.cosine_tolerance,
    };
    let report = run_checks(&settings)?;
    if args.json {
        let json = serde_json::json!({
            "lcsim_version": env!("CARGO_PKG_VERSION"),
            "settings": format!("{settings:?}"),
            "report": report,
            "passed": report.passed(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("report serialises")
        );
    } else {
        print_check_tables(&settings, &report);
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// A table of per-tensor relative errors with its maximum and verdict.
fn print_errors(errors: &[lcsim::studies::check::TensorError], max: f64, tol: f64, passed: bool) {
    println!("    {:<8} {:>12}", "tensor", "rel. error");
    for e in errors {
        println!("    {:<8} {:>12.3e}", e.name, e.rel_error);
    }
    println!(
        "    max      {max:>12.3e}  <= {tol:.0e}  {}",
        verdict(passed)
    );
}

fn print_check_tables(s: &CheckSettings, r: &CheckReport) {
    println!(
        "lcsim check: random {:?}, n_x = {}, n_y = {}, batch {}, seed {}, {}, {} ({:?}), solver {}",
        s.topology,
        s.n_x,
        s.n_y,
        s.batch,
        s.seed,
        s.activation.name(),
        s.loss.name(),
        s.loss_scale,
        s.solver.method.name()
    );
    println!();
    println!(
        "(c) LCP-DI update vs -dH_alpha/dtheta by central differences (alpha = {}, beta = {})",
        s.controller.alpha,
        s.controller.beta()
    );
    print_errors(
        &r.lcp_per_tensor,
        r.fd_rel_error_lcp_vs_h,
        r.fd_tolerance,
        r.passed_fd_lcp,
    );
    println!();
    println!("(d) RBP gradient vs dL(phi0)/dtheta by central differences");
    print_errors(
        &r.rbp_per_tensor,
        r.fd_rel_error_rbp_vs_l,
        r.fd_tolerance,
        r.passed_fd_rbp,
    );
    println!();
    println!("(d) alignment of the LCP update with -RBP gradient as alpha grows");
    println!(
        "    {:>10} {:>14} {:>20}",
        "alpha", "cosine", "|LCP|/(beta |RBP|)"
    );
    for ((a, c), q) in r
        .alphas
        .iter()
        .zip(&r.cosine_lcp_vs_rbp)
        .zip(&r.norm_ratio_lcp_vs_beta_rbp)
    {
        println!("    {a:>10.3e} {c:>14.9} {q:>20.6}");
    }
    println!(
        "    cosine at the largest alpha >= {}  {}",
        r.cosine_tolerance,
        verdict(r.passed_alignment)
    );
    println!();
    println!(
        "(3.2-3.4) the variants against LCP-DI at alpha = {}",
        s.controller.alpha
    );
    println!(
        "    LCP-EBD energy minimum vs DI equilibrium  {:>10.3e}  <= {:.0e}",
        r.ebd_rel_error_equilibrium, r.fd_tolerance
    );
    println!(
        "    LCP-EBD update vs DI update               {:>10.3e}  <= {:.0e}",
        r.ebd_rel_error_update, r.fd_tolerance
    );
    println!(
        "    LCP-KP (B = W^T, G = D^T) update vs DI    {:>10.3e}  <= {:.0e}  {}",
        r.kp_transposes_rel_error_update,
        r.fd_tolerance,
        verdict(r.passed_variants)
    );
    println!(
        "    cosine to the DI update (no exact reference): LCP-KP random B, G {:.4}; LCP-LF random Q {:.4}",
        r.kp_random_cosine_to_di, r.lf_random_cosine_to_di
    );
    println!();
    println!(
        "{}",
        if r.passed() {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
}

/// One batch: free (and controlled) equilibria, LCP updates and RBP gradients.
fn equilibrium(args: &EquilibriumArgs) -> Result<ExitCode> {
    // Validate everything before any work.
    let controller = args.dynamics.controller()?;
    let opts = args.solver.options()?;
    let net = load_params(&args.params, args.model == ModelKind::Ff, args.activation)?;
    let x = load_inputs(&args.input)?;
    let t = load_targets(&args.labels, net.n_y())?;
    if x.nrows() != net.n_x() || t.ncols() != x.ncols() {
        return Err(LcsimError::Shape {
            field: "--input / --labels".into(),
            expected: format!("inputs (B, {}) and labels for the same B", net.n_x()),
            found: format!(
                "inputs (B = {}, {}) and {} labels",
                x.ncols(),
                x.nrows(),
                t.ncols()
            ),
        });
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(lcsim::error::invalid(
                "--out",
                args.out.display(),
                "a path in an existing directory",
            ));
        }
    }
    let method = match args.method {
        EquilibriumMethod::LcpDi => BatchMethod::LcpDi,
        EquilibriumMethod::Free => BatchMethod::Free,
        EquilibriumMethod::Rbp => BatchMethod::Rbp,
    };
    let settings = BatchSettings {
        method,
        objective: Objective::new(args.loss.loss, args.loss.loss_scale, x.ncols()),
        tau_v: args.dynamics.tau_v,
        controller,
        solver: opts,
    };
    let study = equilibrium_arrays(&net, &x, &t, &settings)?;
    for (what, s) in &study.solves {
        println!(
            "{what}: {} samples, {:?}, max residual {:.3e}, mean steps {:.1}, {} by the fallback integrator",
            s.samples, s.terminations, s.max_residual, s.mean_steps, s.fallbacks
        );
    }
    if let Some(h) = study.mean_h {
        println!("  mean H = 1/2 |psi*|^2: {h:.6e}");
    }
    write_batch_study(&args.out, &study)?;
    println!(
        "wrote {} arrays to {}",
        study.arrays.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Progress bar, per-epoch line and checkpoint after every epoch.
struct CliObserver {
    run: RunDir,
    bar: Option<indicatif::ProgressBar>,
}

impl Observer for CliObserver {
    fn on_batch(&mut self, p: &BatchProgress) {
        if let Some(bar) = &self.bar {
            if p.batch == 1 {
                bar.reset();
                bar.set_length(p.batches as u64);
            }
            bar.set_position(p.batch as u64);
            bar.set_message(format!(
                "epoch {} loss {:.4} acc {:.3} steps {:.0} converged {:.0}%",
                p.epoch,
                p.loss,
                p.accuracy,
                p.mean_steps,
                100.0 * p.fraction_converged
            ));
        }
    }

    fn on_epoch(
        &mut self,
        state: &TrainingState,
        m: &lcsim::io::metrics::EpochMetrics,
    ) -> Result<()> {
        self.run.save_epoch(state)?;
        let line = format!(
            "epoch {:>3}: train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4} | H {:.3e} | steps mean {:.0} max {:.0} | unconverged {:.1}% | {:.1} s",
            m.epoch,
            m.train_loss,
            m.train_accuracy,
            m.test_loss,
            m.test_accuracy,
            m.mean_h,
            m.mean_steps,
            m.max_steps,
            100.0 * m.fraction_unconverged,
            m.wall_time_s
        );
        match &self.bar {
            // A hidden bar (output not a terminal) drops its println.
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => println!("{line}"),
        }
        Ok(())
    }
}

/// Training throughput at each thread count, the batched kernel's GFLOP/s and the dgemm peak.
fn throughput(args: &ThroughputArgs) -> Result<ExitCode> {
    use lcsim::numerics::linalg::dgemm_gflops;
    use lcsim::train::time_batches;
    use std::time::Instant;
    let config = Config::load(args.source.config.as_deref(), &args.source.overrides)?;
    if args.batches == 0 {
        return Err(lcsim::error::invalid("--batches", 0, "an integer >= 1"));
    }
    let data = load_split(&config.data)?;
    let t = &config.training;
    let per_epoch = data.train.len().div_ceil(t.batch_size);
    let fresh = || {
        TrainingState::new(
            &config,
            data.train.n_inputs(),
            data.train.n_classes,
            per_epoch,
        )
    };
    let net = fresh()?.net;
    println!(
        "lcsim {} throughput: {} on {}, {} {} -> {:?} -> {}, batch {}, solver {} (chunk {}, stability check {}, fallback {:?}), {} batches per thread count",
        env!("CARGO_PKG_VERSION"),
        config.method.name.name(),
        config.data.source.name(),
        format!("{:?}", config.model.kind).to_lowercase(),
        net.n_x(),
        config.model.hidden,
        net.n_y(),
        t.batch_size,
        config.solver.method.name(),
        config.solver.accelerated.chunk,
        config.solver.accelerated.stability.enabled,
        config.solver.accelerated.fallback,
        args.batches,
    );
    for &threads in &args.threads {
        let m = time_batches(&config, &data, fresh()?, args.batches, threads)?;
        println!(
            "  training, {} thread(s): {:.0} samples/s ({} samples in {:.2} s; mean steps {:.1}, unconverged {:.2}%)",
            m.threads,
            m.samples_per_second(),
            m.samples,
            m.seconds,
            m.mean_steps,
            100.0 * m.fraction_unconverged,
        );
    }
    // The batched controlled residual on `chunk` samples (what one solver iteration costs).
    let b = config.solver.accelerated.chunk.min(data.train.len());
    let idx: Vec<usize> = (0..b).collect();
    let (x, targets) = data.train.batch(&idx);
    let objective = Objective::new(config.method.loss, config.method.loss_scale, t.batch_size);
    let sys = CoupledSystem::new(
        &net,
        x,
        targets,
        objective.clone(),
        config.dynamics.tau_v,
        Some(config.controller_settings()),
    )?;
    let mut rng = lcsim::numerics::rng::Rng::seed_from_u64(1);
    let z = DMatrix::from_fn(sys.dim(), b, |_, _| rng.uniform_range(-0.5, 0.5));
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(sys.residual(&z));
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (n_h, n_y) = (net.n_h() as f64, net.n_y() as f64);
    // Forward (W; D) s(v) and feedback (W; D)^T psi: 2 * 2 n_h (n_h + n_y) flop per sample.
    let kernel = 4.0 * n_h * (n_h + n_y) * b as f64 / median / 1e9;
    let peak = dgemm_gflops(2048, 3);
    println!(
        "  batched controlled residual, {b} samples, 1 thread: {:.1} us, {kernel:.1} GFLOP/s",
        median * 1e6
    );
    println!(
        "  dgemm 2048 x 2048 x 2048 (faer), 1 thread: {peak:.1} GFLOP/s; kernel at {:.0}% of it",
        100.0 * kernel / peak
    );
    Ok(ExitCode::SUCCESS)
}

fn train(args: &TrainArgs) -> Result<ExitCode> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let (run, config, data) = match &args.resume {
        Some(dir) => {
            let (run, config) = RunDir::open(dir)?;
            if run.is_finished() {
                println!("{} is finished; nothing to resume", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            let data = load_split(&config.data)?;
            (run, config, data)
        }
        None => {
            let config = Config::load(args.source.config.as_deref(), &args.source.overrides)?;
            // Load the data before creating the folder, so bad data leaves no run behind.
            let data = load_split(&config.data)?;
            (RunDir::create(&config, &command_line)?, config, data)
        }
    };
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let fresh = TrainingState::new(
        &config,
        data.train.n_inputs(),
        data.train.n_classes,
        batches,
    )?;
    let state = run.load_checkpoint(fresh)?;
    println!(
        "lcsim {} train: {} on {} ({} train / {} test), {:?}, epochs {}..{}, run folder {}",
        env!("CARGO_PKG_VERSION"),
        config.method.name.name(),
        data.train.name,
        data.train.len(),
        data.test.len(),
        config.topology(),
        state.epochs_done() + 1,
        config.training.epochs,
        run.path.display()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst));
    }
    let bar = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new(batches as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} batches {elapsed_precise} {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let mut observer = CliObserver {
        run: run.clone(),
        bar,
    };
    let (state, outcome) = lcsim::train::train(&config, &data, state, &mut observer, &stop)?;
    if let Some(bar) = &observer.bar {
        bar.finish_and_clear();
    }
    if outcome == Outcome::Interrupted {
        println!(
            "interrupted after epoch {}; continue with: lcsim train --resume {}",
            state.epochs_done(),
            run.path.display()
        );
        return Ok(ExitCode::from(130));
    }
    let finished = lcsim::run::finish_run(&run, &config, &state)?;
    if let Some(e) = &finished.figure_error {
        eprintln!(
            "warning: figures not drawn ({e}); retry with `lcsim plot {}`",
            run.path.display()
        );
    }
    let (summary, figures) = (&finished.summary, &finished.summary.figures);
    println!(
        "done: test accuracy {:.4}, test loss {:.4} after {} epochs",
        summary.final_test_accuracy, summary.final_test_loss, summary.epochs
    );
    println!("results: {}", run.path.display());
    for f in figures {
        println!("figure:  {}", run.path.join(f).display());
    }
    Ok(ExitCode::SUCCESS)
}

fn show_config(args: &ConfigArgs) -> Result<ExitCode> {
    if args.source.config.is_none() && args.source.overrides.is_empty() {
        print!("{}", Config::default_toml());
    } else {
        print!(
            "{}",
            Config::load(args.source.config.as_deref(), &args.source.overrides)?.to_toml()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plot(args: &PlotArgs) -> Result<ExitCode> {
    let (run, config) = RunDir::open(&args.run_dir)?;
    let rows = lcsim::io::metrics::read_csv(&run.path.join("metrics.csv"))?;
    for f in draw_run_figures(
        &run,
        &rows,
        args.format.unwrap_or(config.output.figure_format),
    )? {
        println!("figure: {}", run.path.join(f).display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The network to simulate, where it came from, and the default simulation name.
fn simulated_network(
    config: &Config,
    data: &lcsim::data::Split,
    args: &SimulateArgs,
    run: Option<&RunDir>,
) -> Result<(
    RateNetwork,
    Option<lcsim::system::params::Params>,
    String,
    String,
)> {
    let layered = config.model.kind == lcsim::config::ModelKind::Ff;
    let stem = |p: &std::path::Path| {
        p.file_stem()
            .or(p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| config.run_name())
    };
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let fresh = TrainingState::new(config, data.train.n_inputs(), data.train.n_classes, batches)?;
    // The controller's learned weights (lcp-kp, lcp-lf): the run's, else the initial ones.
    let mut feedback = fresh.feedback.clone();
    let (net, source, name, field) = if let Some(run) = run {
        let name = run
            .path
            .file_name()
            .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned());
        let params = run.path.join("params.npz");
        if params.is_file() {
            let net = load_params(&params, layered, config.model.activation)?;
            if let Some(layout) = &feedback {
                feedback = Some(lcsim::io::interop::load_feedback(
                    &run.path.join("feedback.npz"),
                    layout,
                )?);
            }
            let source = format!("{} (finished run)", params.display());
            (net, source, name, "--run")
        } else if run.path.join("checkpoint.npz").is_file() {
            let state = run.load_checkpoint(fresh)?;
            feedback = state.feedback.clone();
            let source = format!(
                "{} after epoch {} (unfinished run)",
                run.path.join("checkpoint.npz").display(),
                state.epochs_done()
            );
            (state.net, source, name, "--run")
        } else {
            return Err(lcsim::error::invalid(
                "--run",
                run.path.display(),
                "a run folder with params.npz or checkpoint.npz (at least one completed epoch)",
            ));
        }
    } else if let Some(path) = &args.params {
        let net = load_params(path, layered, config.model.activation)?;
        (net, path.display().to_string(), stem(path), "--params")
    } else {
        let source = format!("fresh network (model.seed = {})", config.model.seed);
        (fresh.net, source, config.run_name(), "model")
    };
    if net.topology() != &config.topology()
        || net.n_x() != data.train.n_inputs()
        || net.n_y() != data.train.n_classes
    {
        return Err(LcsimError::Shape {
            field: field.into(),
            expected: format!(
                "{:?} with {} inputs and {} outputs (model.kind, model.hidden and the data; change them with --set model.hidden=[...])",
                config.topology(),
                data.train.n_inputs(),
                data.train.n_classes
            ),
            found: format!(
                "{:?} with {} inputs and {} outputs",
                net.topology(),
                net.n_x(),
                net.n_y()
            ),
        });
    }
    Ok((net, feedback, source, name))
}

fn simulate(args: &SimulateArgs) -> Result<ExitCode> {
    use lcsim::studies::simulate::{
        ensure_new, simulate_dataset_samples, simulation_path, validate_name, write_simulation,
        Provenance,
    };
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let settings = args.settings();
    // Validate everything before any work or any folder.
    let (config, run) = match &args.run {
        Some(dir) => {
            let (run, _) = RunDir::open(dir)?;
            let config = Config::load(Some(&dir.join("config.toml")), &args.source.overrides)?;
            (config, Some(run))
        }
        None => (
            Config::load(args.source.config.as_deref(), &args.source.overrides)?,
            None,
        ),
    };
    let data = load_split(&config.data)?;
    let dataset = settings.split.of(&data);
    settings
        .validate(dataset.len())
        .map_err(rename_simulate_field)?;
    let (net, feedback, params_source, default_name) =
        simulated_network(&config, &data, args, run.as_ref())?;
    let (name, dir) = match &args.name {
        Some(name) => {
            validate_name(name).map_err(rename_simulate_field)?;
            let dir = simulation_path(&config, name);
            ensure_new(&dir).map_err(rename_simulate_field)?;
            (name.clone(), dir)
        }
        None => {
            let mut name = default_name.clone();
            for k in 2.. {
                if !simulation_path(&config, &name).exists() {
                    break;
                }
                name = format!("{default_name}-{k}");
            }
            let dir = simulation_path(&config, &name);
            (name, dir)
        }
    };
    println!(
        "lcsim {} simulate: {:?}, {} samples {:?} of {}, controller on at t = {} until t = {}, {} points, solver {}",
        env!("CARGO_PKG_VERSION"),
        config.topology(),
        settings.split.name(),
        settings.samples,
        dataset.name,
        settings.t_on,
        settings.t_end,
        settings.output_times().len(),
        config.solver.method.name()
    );
    println!("network: {params_source}");
    let sim = simulate_dataset_samples(&config, &net, feedback.as_ref(), dataset, &settings)
        .map_err(rename_simulate_field)?;
    let provenance = Provenance {
        name,
        command: command_line,
        params_source,
        settings,
    };
    let written =
        write_simulation(&dir, &config, &sim, &provenance).map_err(rename_simulate_field)?;
    let last = sim.times.len() - 1;
    let ended = |r: &Option<lcsim::studies::simulate::SegmentRecord>| {
        r.as_ref()
            .map_or("not run".to_string(), |r| match r.termination {
                lcsim::solve::Termination::Converged => "settled".to_string(),
                lcsim::solve::Termination::MaxTime => {
                    format!("still moving at its end (residual {:.1e})", r.residual)
                }
                ref t => format!(
                    "{} at t = {:.1} (residual {:.1e})",
                    t.name(),
                    r.time_reached,
                    r.residual
                ),
            })
    };
    for ((tr, sample), label) in sim.trajectories.iter().zip(&sim.samples).zip(&sim.labels) {
        println!(
            "sample {sample} (label {label}): free {}, controlled {}; loss {:.4} at t_on -> {:.4} at t_end; |psi| at t_end {:.3e}",
            ended(&tr.free),
            ended(&tr.controlled),
            tr.loss[sim.switch_index],
            tr.loss[last],
            tr.psi_norm[last]
        );
    }
    println!("results: {}", written.dir.display());
    for f in &written.figures {
        println!("figure:  {}", f.display());
    }
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

/// Creates `dir` (and its parents) for results.
fn create_out_dir(flag: &str, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| LcsimError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !dir.is_dir() {
        return Err(lcsim::error::invalid(flag, dir.display(), "a directory"));
    }
    Ok(())
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    lcsim::run::write_atomic(path, text.as_bytes())
}

/// The alignment study (see `lcsim align --help`).
fn align(args: &AlignArgs) -> Result<ExitCode> {
    use lcsim::studies::alignment::{alignment_csv, alignment_curve, draw_alignment, Subject};
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    // Validate everything before any work or any file.
    let config = Config::load(args.source.config.as_deref(), &args.source.overrides)?;
    let alphas = args.alphas()?;
    let variants = args.variants()?;
    if args.samples == 0 {
        return Err(lcsim::error::invalid("--samples", 0, "an integer >= 1"));
    }
    let mut trained = Vec::new();
    for dir in &args.runs {
        let (run, run_config) = RunDir::open(dir)?;
        let method = least_control_run(dir, run_config.method.name)?;
        if trained.iter().any(|(_, _, m, _, _)| *m == method) {
            return Err(lcsim::error::invalid(
                "--run",
                format!("{} (a second run of {})", dir.display(), method.name()),
                "one trained run per variant",
            ));
        }
        let (net, feedback) = run.load_trained(&run_config)?;
        trained.push((run, run_config, method, net, feedback));
    }
    if variants.is_empty() && trained.is_empty() {
        return Err(lcsim::error::invalid(
            "--variants",
            "none",
            "at least one variant, or none with at least one --run",
        ));
    }
    let data = load_split(&config.data)?;
    let dataset = args.split.of(&data);
    if args.samples > dataset.len() {
        return Err(lcsim::error::invalid(
            "--samples",
            args.samples,
            &format!(
                "at most the {} samples of the {} split",
                dataset.len(),
                args.split.name()
            ),
        ));
    }
    for (run, _, _, net, _) in &trained {
        if net.n_x() != dataset.n_inputs() || net.n_y() != dataset.n_classes {
            return Err(LcsimError::Shape {
                field: format!("--run {}", run.path.display()),
                expected: format!(
                    "a network with {} inputs and {} outputs (the data of --config)",
                    dataset.n_inputs(),
                    dataset.n_classes
                ),
                found: format!("{} inputs and {} outputs", net.n_x(), net.n_y()),
            });
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| config.output.dir.join("alignment-alpha"));
    let format = args.format.unwrap_or(config.output.figure_format);
    create_out_dir("--out", &out)?;
    let idx: Vec<usize> = (0..args.samples).collect();
    let (x, targets) = dataset.batch(&idx);
    let n_h = config.topology().hidden_units();
    let describe = format!(
        "{} {} {}-{}-{}, {} {} samples",
        dataset.name,
        format!("{:?}", config.model.kind).to_uppercase(),
        dataset.n_inputs(),
        n_h,
        dataset.n_classes,
        args.samples,
        args.split.name()
    );
    println!(
        "lcsim {} align: {describe}; {} alphas from {:e} to {:e}; solver {}{}, atol {:e}, max_time {}; {} untrained variant(s), {} trained run(s)",
        env!("CARGO_PKG_VERSION"),
        alphas.len(),
        alphas[0],
        alphas[alphas.len() - 1],
        config.solver.method.name(),
        if config.solver.method.follows_flow() {
            String::new()
        } else {
            format!(" (fallback {:?})", config.solver.accelerated.fallback).to_lowercase()
        },
        config.solver.stop.atol,
        config.solver.stop.max_time,
        variants.len(),
        trained.len()
    );
    let batches = 1;
    let mut curves = Vec::new();
    let mut sources = Vec::new();
    let mut measure = |subject: Subject<'_>, source: String| -> Result<()> {
        let start = std::time::Instant::now();
        let curve = alignment_curve(&config, &subject, &x, &targets, &alphas)?;
        let (c, n) = curve.converged();
        println!(
            "  {:<9} {:<7}: controlled solves converged {c}/{n}, free {}/{s}, adjoint {}/{s} ({:.1} s)",
            curve.network,
            curve.variant.name(),
            curve.free_converged,
            curve.adjoint_converged,
            start.elapsed().as_secs_f64(),
            s = curve.samples,
        );
        curves.push(curve);
        sources.push(source);
        Ok(())
    };
    for &v in &variants {
        let mut c = config.clone();
        c.method.name = v;
        let state = TrainingState::new(&c, dataset.n_inputs(), dataset.n_classes, batches)?;
        measure(
            Subject {
                network: "untrained".into(),
                variant: v,
                net: &state.net,
                feedback: state.feedback.as_ref(),
            },
            format!(
                "initial weights (model.seed = {}, feedback seed model.seed ^ {:#x})",
                config.model.seed,
                lcsim::train::FEEDBACK_SEED
            ),
        )?;
    }
    for (run, _, method, net, feedback) in &trained {
        measure(
            Subject {
                network: "trained".into(),
                variant: *method,
                net,
                feedback: feedback.as_ref(),
            },
            run.path.display().to_string(),
        )?;
    }
    println!();
    println!(
        "  {:<9} {:<7} {:>9} {:>10} {:>12} {:>10}",
        "network", "variant", "alpha", "cosine", "norm ratio", "converged"
    );
    for c in &curves {
        for p in &c.points {
            println!(
                "  {:<9} {:<7} {:>9.3e} {:>10.6} {:>12.4e} {:>6}/{}",
                c.network,
                c.variant.name(),
                p.alpha,
                p.cosine,
                p.norm_ratio,
                p.converged,
                p.solves
            );
        }
    }
    let csv = out.join("alignment.csv");
    lcsim::run::write_atomic(&csv, alignment_csv(&curves).as_bytes())?;
    let figure = out.join(format!("alignment.{}", format.extension()));
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| format!("LC update vs RBP gradient: {describe}"));
    draw_alignment(&curves, &title, &figure, format)?;
    let runs: Vec<serde_json::Value> = trained
        .iter()
        .map(|(run, rc, method, _, _)| {
            serde_json::json!({
                "dir": run.path.display().to_string(),
                "method": method.name(),
                "epochs": rc.training.epochs,
                "model_seed": rc.model.seed,
                "training_seed": rc.training.seed,
            })
        })
        .collect();
    let summary: Vec<serde_json::Value> = curves
        .iter()
        .zip(&sources)
        .map(|(c, source)| {
            let (conv, n) = c.converged();
            serde_json::json!({
                "network": c.network,
                "variant": c.variant.name(),
                "weights": source,
                "controlled_converged": conv,
                "controlled_solves": n,
                "free_converged": c.free_converged,
                "adjoint_converged": c.adjoint_converged,
                "samples": c.samples,
            })
        })
        .collect();
    let info = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "command": command_line,
        "alphas": alphas,
        "samples": args.samples,
        "split": args.split.name(),
        "sample_indices": format!("0..{}", args.samples),
        "data": dataset.name,
        "model_seed": config.model.seed,
        "data_seed": config.data.seed,
        "feedback_seed": config.model.seed ^ lcsim::train::FEEDBACK_SEED,
        "ebd_descent": format!("{:?}", config.ebd.clone().unwrap_or_default().descent).to_lowercase(),
        "runs": runs,
        "curves": summary,
        "csv": csv.display().to_string(),
        "figure": figure.display().to_string(),
        "config": config.to_toml(),
    });
    let json = out.join("alignment.json");
    write_json(&json, &info)?;
    let (conv, n) = curves.iter().fold((0, 0), |(a, b), c| {
        let (x, y) = c.converged();
        (a + x, b + y)
    });
    println!();
    println!("controlled solves converged: {conv} of {n}");
    println!("table:    {}", csv.display());
    println!("settings: {}", json.display());
    println!("figure:   {}", figure.display());
    Ok(ExitCode::SUCCESS)
}

/// H and test loss over training for several runs (see `lcsim compare --help`).
fn compare(args: &CompareArgs) -> Result<ExitCode> {
    use lcsim::plot::control_magnitude_panels;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    // Read and check every run before writing anything.
    let mut runs = Vec::new();
    for dir in &args.run_dirs {
        let metrics = dir.join("metrics.csv");
        if !metrics.is_file() {
            return Err(lcsim::error::invalid(
                "RUN_DIR",
                format!("{} (no metrics.csv there)", dir.display()),
                "a run folder made by `lcsim train` with at least one completed epoch",
            ));
        }
        let (run, config) = RunDir::open(dir)?;
        let rows = lcsim::io::metrics::read_csv(&metrics)?;
        if rows.is_empty() || !rows.iter().any(|r| r.mean_h.is_finite()) {
            return Err(lcsim::error::invalid(
                "RUN_DIR",
                format!(
                    "{} (method {}, {} epochs, no finite mean_h)",
                    dir.display(),
                    config.method.name.name(),
                    rows.len()
                ),
                "a least-control run (lcp-di, lcp-kp, lcp-lf, lcp-ebd) with at least one completed epoch",
            ));
        }
        let name = run
            .path
            .file_name()
            .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned());
        runs.push((run, config, name, rows));
    }
    create_out_dir("--out", &args.out)?;
    let panels: Vec<(String, Vec<lcsim::io::metrics::EpochMetrics>)> = runs
        .iter()
        .map(|(_, c, name, rows)| {
            let method = c.method.name.name();
            let caption = if name == method {
                method.to_uppercase()
            } else {
                format!("{} ({name})", method.to_uppercase())
            };
            (caption, rows.clone())
        })
        .collect();
    let first = &runs[0].1;
    let title = args.title.clone().unwrap_or_else(|| {
        format!(
            "Control magnitude H and test loss over training ({}, {} {:?})",
            first.data.source.name(),
            format!("{:?}", first.model.kind).to_uppercase(),
            first.model.hidden
        )
    });
    let figure = args
        .out
        .join(format!("h_and_test_loss.{}", args.format.extension()));
    control_magnitude_panels(&panels, &title, &figure, args.format)?;
    let mut csv = String::from(
        "run,method,epoch,mean_h,test_loss,train_loss,test_accuracy,h_over_first,test_loss_over_first\n",
    );
    let mut table = Vec::new();
    println!(
        "{:<28} {:<8} {:>6} {:>11} {:>11} {:>9} {:>10} {:>10} {:>8}",
        "run",
        "method",
        "epochs",
        "H first",
        "H last",
        "H ratio",
        "loss first",
        "loss last",
        "acc last"
    );
    for (run, config, name, rows) in &runs {
        let first_finite = |f: fn(&lcsim::io::metrics::EpochMetrics) -> f64| {
            rows.iter()
                .map(f)
                .find(|v| v.is_finite())
                .unwrap_or(f64::NAN)
        };
        let last_finite = |f: fn(&lcsim::io::metrics::EpochMetrics) -> f64| {
            rows.iter()
                .rev()
                .map(f)
                .find(|v| v.is_finite())
                .unwrap_or(f64::NAN)
        };
        let (h0, l0) = (first_finite(|r| r.mean_h), first_finite(|r| r.test_loss));
        for r in rows {
            csv.push_str(&format!(
                "{name},{},{},{},{},{},{},{},{}\n",
                config.method.name.name(),
                r.epoch,
                r.mean_h,
                r.test_loss,
                r.train_loss,
                r.test_accuracy,
                r.mean_h / h0,
                r.test_loss / l0
            ));
        }
        let (h1, l1) = (last_finite(|r| r.mean_h), last_finite(|r| r.test_loss));
        let acc = last_finite(|r| r.test_accuracy);
        println!(
            "{name:<28} {:<8} {:>6} {h0:>11.3e} {h1:>11.3e} {:>9.3} {l0:>10.4} {l1:>10.4} {acc:>8.4}",
            config.method.name.name(),
            rows.len(),
            h1 / h0
        );
        table.push(serde_json::json!({
            "dir": run.path.display().to_string(),
            "method": config.method.name.name(),
            "epochs": rows.len(),
            "model_seed": config.model.seed,
            "training_seed": config.training.seed,
            "mean_h_first": h0,
            "mean_h_last": h1,
            "test_loss_first": l0,
            "test_loss_last": l1,
            "test_accuracy_last": acc,
        }));
    }
    let csv_path = args.out.join("h_and_test_loss.csv");
    lcsim::run::write_atomic(&csv_path, csv.as_bytes())?;
    let json = args.out.join("compare.json");
    write_json(
        &json,
        &serde_json::json!({
            "lcsim_version": env!("CARGO_PKG_VERSION"),
            "command": command_line,
            "runs": table,
            "figure": figure.display().to_string(),
            "csv": csv_path.display().to_string(),
        }),
    )?;
    println!("table:    {}", csv_path.display());
    println!("settings: {}", json.display());
    println!("figure:   {}", figure.display());
    Ok(ExitCode::SUCCESS)
}
