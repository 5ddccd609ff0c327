use lcsim::activation::Activation;
use lcsim::data::mnist;
use lcsim::loss::Loss;
use lcsim::model::rate::{RateNetwork, Topology};
use lcsim::steady_state::{relax, relax_from, SolverMethod, SteadyStateOptions};
use lcsim::system::{ControllerSettings, CoupledSystem, LossScale, Objective};
use std::time::Instant;

fn main() {
    let split = mnist(
        std::path::Path::new("../shared/data/mnist10k"),
        Some(64),
        Some(10),
    )
    .unwrap();
    let idx: Vec<usize> = (0..64).collect();
    let (x, t) = split.train.batch(&idx);
    let net = RateNetwork::new(
        784,
        Topology::Recurrent { hidden: 256 },
        10,
        Activation::Tanh,
        0,
    )
    .unwrap();
    let obj = Objective::new(Loss::CrossEntropy, LossScale::BatchMean, 64);
    let sys =
        CoupledSystem::new(&net, x, t, obj, 1.0, Some(ControllerSettings::default())).unwrap();
    let free = sys.free();
    let reference = SteadyStateOptions {
        method: SolverMethod::Euler,
        dt: 1.0,
        max_steps: 20000,
        ..Default::default()
    };
    let t0 = Instant::now();
    let fr = relax(&free, &reference);
    let phi0 = free.phi(&fr.states);
    let start = sys.state_with_phi(&phi0).unwrap();
    let cr = relax_from(&sys, &start, &reference);
    eprintln!(
        "euler ref: free steps {:.1} ctrl steps {:.1} conv {} ({:.1} ms)",
        fr.mean_steps(),
        cr.mean_steps(),
        cr.fraction_converged(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let args: Vec<String> = std::env::args().collect();
    for spec in args.iter().skip(1) {
        let parts: Vec<&str> = spec.split(':').collect();
        let method = match parts[0] {
            "anderson" => SolverMethod::Anderson,
            "nk" => SolverMethod::NewtonKrylov,
            "euler" => SolverMethod::Euler,
            _ => SolverMethod::Tsit45,
        };
        let mut o = SteadyStateOptions {
            method,
            ..Default::default()
        };
        for kv in &parts[1..] {
            let (k, v) = kv.split_once('=').unwrap();
            match k {
                "dt" => o.dt = v.parse().unwrap(),
                "m" => o.anderson_memory = v.parse().unwrap(),
                "stab" => o.stability_check = v == "1",
                "chunk" => o.chunk = v.parse().unwrap(),
                "kd" => o.krylov_dim = v.parse().unwrap(),
                "forcing" => o.newton_forcing = v.parse().unwrap(),
                "damp" => o.anderson_damping = v.parse().unwrap(),
                _ => panic!("{k}"),
            }
        }
        let t0 = Instant::now();
        let f = relax(&free, &o);
        let tf = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let c = relax_from(&sys, &start, &o);
        let tc = t1.elapsed().as_secs_f64() * 1e3;
        let dfree = (&f.states - &fr.states).amax();
        let dctrl = (&c.states - &cr.states).amax();
        let fb = c
            .records
            .iter()
            .filter(|r| r.fallback_from.is_some())
            .count();
        let unstable = c
            .records
            .iter()
            .filter(|r| {
                matches!(
                    r.fallback_from,
                    Some(lcsim::steady_state::Termination::Unstable { .. })
                )
            })
            .count();
        let rhs: usize = c.records.iter().map(|r| r.rhs_evals).sum();
        let jvp: usize = c.records.iter().map(|r| r.jvp_evals).sum();
        eprintln!("{spec}: free {tf:.1} ms (steps {:.1}, |d| {dfree:.1e}) ctrl {tc:.1} ms (steps {:.1}, rhs/s {:.1}, jvp/s {:.1}, conv {}, fallback {fb} unstable {unstable}, |d| {dctrl:.1e})", f.mean_steps(), c.mean_steps(), rhs as f64/64.0, jvp as f64/64.0, c.fraction_converged());
    }
}
