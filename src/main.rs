//! The `lcsim` command: parses flags (cli.rs), validates them into library settings and
//! runs the library.

mod cli;

use clap::Parser;
use cli::{CheckArgs, Cli, Command, EquilibriumArgs, EquilibriumMethod, ModelKind};
use lcsim::baselines::rbp_gradient;
use lcsim::check::{run_checks, CheckReport, CheckSettings};
use lcsim::error::{LcsimError, Result};
use lcsim::interop::{load_inputs, load_params, load_targets, npy_from_matrix};
use lcsim::model::rate::RateNetwork;
use lcsim::npz::{write_npz, NpyArray};
use lcsim::plasticity::{control_magnitude, least_control_update};
use lcsim::steady_state::{relax, BatchSteadyState};
use lcsim::system::{CoupledSystem, Objective};
use nalgebra::DMatrix;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check(args) => check(&args),
        Command::Equilibrium(args) => equilibrium(&args),
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
fn print_errors(errors: &[lcsim::check::TensorError], max: f64, tol: f64, passed: bool) {
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
    let objective = Objective::new(args.loss.loss, args.loss.loss_scale, x.ncols());
    let free = CoupledSystem::new(
        &net,
        x.clone(),
        t.clone(),
        objective,
        args.dynamics.tau_v,
        None,
    )?;

    let mut out: Vec<(String, NpyArray)> = Vec::new();
    let n_h = net.n_h();
    let free_solve = relax(&free, &opts);
    let phi0 = free.phi(&free_solve.states);
    push_rows(&mut out, "free_v", &phi0.rows(0, n_h).into_owned());
    push_rows(&mut out, "free_y", &phi0.rows(n_h, net.n_y()).into_owned());
    push_records(&mut out, "free", &free_solve);
    out.push(("free_loss".into(), vector(&free.output_loss(&phi0))));
    summarize("free", &free_solve);

    if args.method != EquilibriumMethod::Free {
        let (grad, adjoints) = rbp_gradient(&free, &phi0, &opts);
        push_params(&mut out, "rbp_", &net, &grad);
        push_records(&mut out, "adjoint", &adjoints);
        summarize("adjoint (RBP)", &adjoints);
    }
    if args.method == EquilibriumMethod::LcpDi {
        let controlled =
            CoupledSystem::new(&net, x, t, objective, args.dynamics.tau_v, Some(controller))?;
        let solve = relax(&controlled, &opts);
        let z = &solve.states;
        let psi = controlled.control(z);
        let rows = |r: std::ops::Range<usize>| z.rows_range(r).into_owned();
        push_rows(&mut out, "v", &rows(0..n_h));
        push_rows(&mut out, "y", &rows(controlled.output_rows()));
        push_rows(&mut out, "u_i", &rows(controlled.integral_rows()));
        push_rows(
            &mut out,
            "u",
            &psi.rows_range(controlled.output_rows()).into_owned(),
        );
        push_rows(&mut out, "e", &rows(controlled.control_rows()));
        push_records(&mut out, "controlled", &solve);
        let h = control_magnitude(&controlled, z);
        out.push(("H".into(), vector(&h)));
        push_params(
            &mut out,
            "lcp_",
            &net,
            &least_control_update(&controlled, z),
        );
        summarize("controlled (LCP-DI)", &solve);
        println!(
            "  mean H = 1/2 |psi*|^2: {:.6e}",
            h.iter().sum::<f64>() / h.len() as f64
        );
    }
    let refs: Vec<(&str, &NpyArray)> = out.iter().map(|(n, a)| (n.as_str(), a)).collect();
    write_npz(&args.out, &refs)?;
    println!("wrote {} arrays to {}", out.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Stores an n x B state block as (B, n): one sample per row.
fn push_rows(out: &mut Vec<(String, NpyArray)>, name: &str, m: &DMatrix<f64>) {
    out.push((name.into(), npy_from_matrix(&m.transpose(), false)));
}

fn vector(values: &[f64]) -> NpyArray {
    NpyArray {
        shape: vec![values.len()],
        data: values.to_vec(),
    }
}

fn push_params(
    out: &mut Vec<(String, NpyArray)>,
    prefix: &str,
    net: &RateNetwork,
    p: &lcsim::params::Params,
) {
    for (n, m) in net.named_arrays_of(p) {
        out.push((format!("{prefix}{n}"), npy_from_matrix(&m, true)));
    }
}

/// Per-sample solver records: converged (0/1), residual, time, steps.
fn push_records(out: &mut Vec<(String, NpyArray)>, prefix: &str, b: &BatchSteadyState) {
    let col = |f: &dyn Fn(&lcsim::steady_state::SteadyState) -> f64| {
        vector(&b.records.iter().map(f).collect::<Vec<_>>())
    };
    out.push((
        format!("{prefix}_converged"),
        col(&|r| r.converged() as u8 as f64),
    ));
    out.push((format!("{prefix}_residual"), col(&|r| r.residual)));
    out.push((format!("{prefix}_time"), col(&|r| r.time)));
    out.push((format!("{prefix}_steps"), col(&|r| r.steps as f64)));
}

fn summarize(what: &str, b: &BatchSteadyState) {
    let mut counts = std::collections::BTreeMap::new();
    for r in &b.records {
        *counts.entry(r.termination.name()).or_insert(0usize) += 1;
    }
    println!(
        "{what}: {} samples, {:?}, max residual {:.3e}, mean steps {:.1}",
        b.records.len(),
        counts,
        b.max_residual(),
        b.mean_steps()
    );
}
