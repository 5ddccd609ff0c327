use lcsim::control::{CoupledSystem, LossScale, Objective};
use lcsim::numerics::rng::Rng;
use lcsim::solve::{newton_polish, solve_batch, SolverMethod, SolverSettings, VectorField};
use lcsim::system::conv_deq::{ConvDeq, DeqSpec};
use lcsim::system::loss::{one_hot, Loss};
use lcsim::solve::spectral_abscissa;
use nalgebra::DMatrix;

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (std, ch, inner, groups, side) = (args[0], args[1] as usize, args[2] as usize, args[3] as usize, args[4] as usize);
    let spec = DeqSpec { channels: ch, inner_channels: inner, kernel: 3, groups, input_pool: 1, init_std: std };
    let net = ConvDeq::new(&spec, (1, side, side), 3, lcsim::numerics::activation::Activation::Tanh, 0).unwrap();
    let mut rng = Rng::seed_from_u64(1);
    let b = 2;
    let x = DMatrix::from_fn(side * side, b, |_, _| rng.uniform());
    let t = one_hot(&[0, 1], 3);
    let obj = Objective::new(Loss::CrossEntropy, LossScale::BatchMean, b);
    let free = CoupledSystem::new(&net, x, t, obj, 1.0, None).unwrap();
    let mut s = SolverSettings::default();
    s.method = SolverMethod::Tsit45;
    s.stop.max_steps = 20000;
    let r = solve_batch(&free, &free.initial_state(), &s);
    for (j, rec) in r.records.iter().enumerate() {
        println!("sample {j}: {} t={:.1} steps={} residual={:.2e}", rec.termination.name(), rec.time, rec.steps, rec.residual);
        let one = free.select_samples(&[j]);
        let z = newton_polish(&one, &r.states.columns(j, 1).into_owned(), 30);
        let res = one.residual(&z).amax();
        let n = one.dim();
        let jac = one.jacobian_at(&z);
        let mut m = DMatrix::zeros(n, n);
        for k in 0..n { let mut e = DMatrix::zeros(n, 1); e[k] = 1.0; m.set_column(k, &jac(&e).column(0)); }
        println!("   newton residual {res:.2e}, spectral abscissa {:.4}", spectral_abscissa(m));
    }
}
