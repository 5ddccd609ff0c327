//! The checks of spec 6.3 and 6.4 on the convolutional systems (`lcsim check --system conv`
//! and `--system deq`): a small random layered conv net or conv DEQ on random images, the
//! LCP-DI update against central finite differences of `H_alpha`, the RBP gradient against
//! finite differences of `L(phi0)`, and the cosine of the two as the control weakens; and
//! LCP-KP with its feedback kernels set to the transposes they stand in for against LCP-DI.
//! The numbers come from [`spec_checks`] and [`kolen_pollack_against_di`], the same code
//! that checks the rate network.

use crate::control::{CoupledSystem, Objective};
use crate::error::Result;
use crate::numerics::pool::PoolKind;
use crate::numerics::rng::Rng;
use crate::studies::check::{
    kolen_pollack_against_di, overall, random_batch, spec_checks, verdict, write_spec_tables,
    CheckSettings, SpecReport,
};
use crate::studies::progress;
use crate::system::conv_deq::{ConvDeq, DeqSpec};
use crate::system::conv_net::{ConvNet, LayerSpec};
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use serde::Serialize;

/// Which convolutional system is checked.
#[derive(Clone, Debug, PartialEq)]
pub enum ConvModel {
    /// A layered conv net with these hidden layers (its free equilibrium is the forward pass).
    Layered(Vec<LayerSpec>),
    /// A convolutional DEQ (a genuine fixed point).
    Deq(DeqSpec),
}

impl ConvModel {
    /// The default small layered net: conv 2 channels 3x3 (padding 1) with 2x2 max pooling,
    /// then a stride-2 conv of 3 channels, then 4 dense units.
    pub fn small_layered() -> Self {
        ConvModel::Layered(vec![
            LayerSpec::conv(2, 3, 1).with_pool(PoolKind::Avg, 2),
            LayerSpec::conv(3, 3, 1).with_stride(2),
            LayerSpec::dense(4),
        ])
    }

    /// The default small DEQ: 4 state channels, 8 inner channels, 3x3 kernels, GroupNorm GN2
    /// in 2 groups (GN1 and GN3 off, as `[deq]`'s default), K1 and K2 drawn with std 0.05 (the
    /// authors' 0.01 leaves the loop through them nearly silent), the readout on each
    /// channel's mean over the 6 x 6 grid.
    pub fn small_deq() -> Self {
        ConvModel::Deq(DeqSpec {
            channels: 4,
            inner_channels: 8,
            kernel: 3,
            groups: 2,
            input_pool: 1,
            readout_pool: 6,
            init_std: 0.05,
            skip_gain: 0.5,
            inner_norm: false,
            output_norm: false,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            ConvModel::Layered(_) => "layered conv net",
            ConvModel::Deq(_) => "conv DEQ",
        }
    }
}

/// What to check: the system, its image shape and the checks' settings (`check.n_x` and
/// `check.topology` are not read; n_y, batch, seed, activation, loss,
/// controller, alphas, solver and tolerances are).
#[derive(Clone, Debug)]
pub struct ConvCheckSettings {
    pub model: ConvModel,
    /// `(channels, height, width)` of the random images.
    pub image: (usize, usize, usize),
    /// Entries of each parameter tensor probed by finite differences (chosen at random from
    /// the seed; all of a smaller tensor).
    pub probes_per_tensor: usize,
    pub check: CheckSettings,
}

impl ConvCheckSettings {
    /// The checks of `model` on random 1 x 6 x 6 images with `check`'s settings, probing up to
    /// 8 entries per tensor.
    pub fn new(model: ConvModel, check: CheckSettings) -> Self {
        ConvCheckSettings {
            model,
            image: (1, 6, 6),
            probes_per_tensor: 8,
            check,
        }
    }
}

/// A 0/1 mask of `layout` with up to `per_tensor` ones per tensor at entries drawn from `seed`.
fn probe_mask(layout: &Params, per_tensor: usize, seed: u64) -> Params {
    let mut rng = Rng::seed_from_u64(seed);
    let mut mask = layout.zeros_like();
    for m in mask.tensors_mut() {
        let n = m.len();
        if n <= per_tensor {
            m.fill(1.0);
            continue;
        }
        let mut chosen = 0;
        while chosen < per_tensor {
            let k = ((rng.uniform() * n as f64) as usize).min(n - 1);
            if m[k] == 0.0 {
                m[k] = 1.0;
                chosen += 1;
            }
        }
    }
    mask
}

/// What the checks measured on a conv system: spec 6.3 and 6.4, and LCP-KP against LCP-DI.
#[derive(Clone, Debug, Serialize)]
pub struct ConvCheckReport {
    #[serde(flatten)]
    pub spec: SpecReport,
    /// LCP-KP with its feedback kernels set to the transposes they stand in for (B_k = the
    /// forward kernels, G = D^T): update vs LCP-DI update, relative.
    pub kp_transposes_rel_error_update: f64,
    /// cosine(LCP-KP update with its random initial feedback; LCP-DI update) (no criterion).
    pub kp_random_cosine_to_di: f64,
    pub passed_kp: bool,
}

impl ConvCheckReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.spec.passed() && self.passed_kp
    }
}

/// Runs checks 6.3 and 6.4 and LCP-KP's on the random conv system of `s`.
pub fn run_conv_checks(s: &ConvCheckSettings) -> Result<ConvCheckReport> {
    s.check.validate()?;
    let c = &s.check;
    let (x, t) = random_batch(c, s.image.0 * s.image.1 * s.image.2);
    let probes = |p: &Params| probe_mask(p, s.probes_per_tensor, c.seed.wrapping_add(2));
    match &s.model {
        ConvModel::Layered(layers) => {
            let net = ConvNet::new(layers, s.image, c.n_y, c.activation, c.seed)?;
            checks_of(&net, &probes(net.params()), &x, &t, c)
        }
        ConvModel::Deq(spec) => {
            let net = ConvDeq::new(spec, s.image, c.n_y, c.activation, c.seed)?;
            checks_of(&net, &probes(net.params()), &x, &t, c)
        }
    }
}

/// [`spec_checks`] on `net`, then LCP-KP against its LCP-DI update from the same phi0.
fn checks_of<M: EquilibriumSystem + Clone>(
    net: &M,
    probes: &Params,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    c: &CheckSettings,
) -> Result<ConvCheckReport> {
    let checked = spec_checks(net, Some(probes), x, t, c)?;
    let objective = Objective::new(c.loss, c.loss_scale, x.ncols());
    let controlled = CoupledSystem::new(
        net,
        x.clone(),
        t.clone(),
        objective,
        c.tau_v,
        Some(c.controller),
    )?;
    progress::report("check: LCP-KP against LCP-DI", 0, 1);
    let kp = kolen_pollack_against_di(&controlled, &checked.phi0, &checked.update, &c.solver)?;
    Ok(ConvCheckReport {
        passed_kp: kp.transposes_rel_error <= c.fd_tolerance,
        kp_transposes_rel_error_update: kp.transposes_rel_error,
        kp_random_cosine_to_di: kp.random_cosine,
        spec: checked.report,
    })
}

/// The report as the tables `lcsim check --system conv|deq` prints.
pub fn render_conv_text(s: &ConvCheckSettings, r: &ConvCheckReport) -> String {
    let mut out = String::new();
    let c = &s.check;
    let head = format!(
        "lcsim check: random {} {:?}, image {:?}, n_y = {}, batch {}, seed {}, {} ({:?}), solver {}\n\
         finite differences on up to {} entries of each tensor (drawn from the seed)\n\n",
        s.model.name(),
        s.model,
        s.image,
        c.n_y,
        c.batch,
        c.seed,
        c.loss.name(),
        c.loss_scale,
        c.solver.method.name(),
        s.probes_per_tensor
    );
    out.push_str(&head);
    write_spec_tables(&mut out, &c.controller, &r.spec).expect("writing to a String cannot fail");
    out.push_str(&format!(
        "\n(3.2) LCP-KP against LCP-DI at alpha = {}\n    \
         LCP-KP (feedback = the transposes) update vs DI  {:>10.3e}  <= {:.0e}  {}\n    \
         cosine to the DI update (no exact reference): LCP-KP random feedback {:.4}\n",
        c.controller.alpha,
        r.kp_transposes_rel_error_update,
        r.spec.fd_tolerance,
        verdict(r.passed_kp),
        r.kp_random_cosine_to_di
    ));
    out.push('\n');
    out.push_str(overall(r.passed()));
    out.push('\n');
    out
}

/// The report as one JSON object: version, system, settings (Debug), report and verdict.
pub fn render_conv_json(s: &ConvCheckSettings, r: &ConvCheckReport) -> String {
    let json = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "system": match s.model { ConvModel::Layered(_) => "conv", ConvModel::Deq(_) => "deq" },
        "settings": format!("{s:?}"),
        "report": r,
        "passed": r.passed(),
    });
    serde_json::to_string_pretty(&json).expect("report serialises")
}
