//! Cost of one meta-batch of meta-learning (spec 7.1) by least control against implicit
//! MAML and first-order MAML, on `experiments/meta-sinusoid.toml` (25 sinusoid tasks, K = 10,
//! learner 1-40-40-1, lambda 5, Newton-Krylov with the flow certificate), and the accuracy of
//! each meta-gradient against the exact implicit one (CG to 1e-12).
//!
//! Run with `cargo bench --bench meta`. Each method trains the first 4 meta-batches of epoch 1
//! from the same initial theta on one thread ([`time_batches`]: inner solve, meta-gradient,
//! optimizer step); the three methods take turns, 3 rounds, and the medians per meta-batch
//! and their ratios are printed. Then, on the first meta-batch, the cosine and relative error
//! of the LCP-DI update (`-lambda sum psi*`, scaled by 1/beta) and of CG at
//! `meta.cg_tolerance` against the exact implicit gradient.

use lcsim::config::{Config, Method};
use lcsim::control::{free_equilibrium, CoupledSystem};
use lcsim::learn::meta_gradient::implicit_meta_gradient;
use lcsim::learn::variant::ControlledEquilibrium;
use lcsim::train::{load_split, time_batches, TrainingState};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/meta-sinusoid.toml"
    );
    let base = Config::load(Some(std::path::Path::new(path)), &[]).expect("the meta config");
    let data = load_split(&base).expect("sinusoid tasks");
    let batches = 4;
    let methods = [Method::LcpDi, Method::Imaml, Method::Fomaml];
    let mut seconds = vec![Vec::new(); methods.len()];
    for _ in 0..3 {
        for (k, &m) in methods.iter().enumerate() {
            let mut c = base.clone();
            c.method.name = m;
            let state = TrainingState::new_meta(&c, 40).unwrap();
            let t = time_batches(&c, &data, state, batches, 1).unwrap();
            seconds[k].push(t.seconds / batches as f64);
        }
    }
    let med: Vec<f64> = seconds.into_iter().map(median).collect();
    for (m, s) in methods.iter().zip(&med) {
        println!(
            "{:>7}: {:.3} s per meta-batch of {} tasks (median of 3, 1 thread); {:.2}x lcp-di",
            m.name(),
            s,
            base.training.batch_size,
            s / med[0]
        );
    }

    // Accuracy of the meta-gradients on the first meta-batch at the initial theta.
    let b = base.training.batch_size;
    let (x, targets) = data.train.batch(&(0..b).collect::<Vec<_>>());
    let net = lcsim::train::meta::meta_system(&base).unwrap();
    let free = CoupledSystem::new(&net, x, targets, base.objective(b), 1.0, None).unwrap();
    let (phi0, _) = free_equilibrium(&free, &base.solver);
    let (exact, report) = implicit_meta_gradient(&free, &phi0, 1e-12, 1000).unwrap();
    let meta = base.meta_settings();
    let (cg, cg_report) =
        implicit_meta_gradient(&free, &phi0, meta.cg_tolerance, meta.cg_max_iterations).unwrap();
    let settings = base.variant(Method::LcpDi, base.controller_settings());
    let eq = ControlledEquilibrium::find(&settings, None, &free, &phi0).unwrap();
    let mut lcp = eq.update().unwrap();
    lcp.scale(-1.0 / base.controller_settings().beta());
    let rel = |g: &lcsim::system::params::Params| {
        let mut d = g.clone();
        d.axpy(-1.0, &exact);
        d.norm() / exact.norm()
    };
    println!(
        "exact implicit gradient: CG {} iterations (max) to 1e-12",
        report.max_iterations
    );
    println!(
        "  imaml (cg_tolerance {:e}, {:.1} iterations mean): cosine {:.6}, relative error {:.2e}",
        meta.cg_tolerance,
        cg_report.mean_iterations,
        cg.cosine(&exact),
        rel(&cg)
    );
    println!(
        "  lcp-di (alpha {}, -update / beta): cosine {:.6}, relative error {:.2e}",
        base.controller.alpha,
        lcp.cosine(&exact),
        rel(&lcp)
    );
}
