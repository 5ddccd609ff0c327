//! The checks of spec 6.3 and 6.4 on the convolutional systems (`lcsim check --system conv`
//! and `--system deq`): a small random layered conv net or conv DEQ on random images, the
//! LCP-DI update against central finite differences of `H_alpha`, the RBP gradient against
//! finite differences of `L(phi0)`, and the cosine of the two as the control weakens. The
//! numbers come from [`spec_checks`], the same code that checks the rate network.

use crate::error::Result;
use crate::numerics::pool::PoolKind;
use crate::numerics::rng::Rng;
use crate::studies::check::{
    overall, random_batch, spec_checks, write_spec_tables, CheckSettings, SpecReport,
};
use crate::system::conv_deq::{ConvDeq, DeqSpec};
use crate::system::conv_net::{ConvNet, LayerSpec};
use crate::system::params::Params;
use crate::system::EquilibriumSystem;

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

/// Runs checks 6.3 and 6.4 on the random conv system of `s`.
pub fn run_conv_checks(s: &ConvCheckSettings) -> Result<SpecReport> {
    s.check.validate()?;
    let c = &s.check;
    let (x, t) = random_batch(c, s.image.0 * s.image.1 * s.image.2);
    let probes = |p: &Params| probe_mask(p, s.probes_per_tensor, c.seed.wrapping_add(2));
    let checked = match &s.model {
        ConvModel::Layered(layers) => {
            let net = ConvNet::new(layers, s.image, c.n_y, c.activation, c.seed)?;
            spec_checks(&net, Some(&probes(net.params())), &x, &t, c)?
        }
        ConvModel::Deq(spec) => {
            let net = ConvDeq::new(spec, s.image, c.n_y, c.activation, c.seed)?;
            spec_checks(&net, Some(&probes(net.params())), &x, &t, c)?
        }
    };
    Ok(checked.report)
}

/// The report as the tables `lcsim check --system conv|deq` prints.
pub fn render_conv_text(s: &ConvCheckSettings, r: &SpecReport) -> String {
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
    write_spec_tables(&mut out, &c.controller, r).expect("writing to a String cannot fail");
    out.push('\n');
    out.push_str(overall(r.passed()));
    out.push('\n');
    out
}

/// The report as one JSON object: version, system, settings (Debug), report and verdict.
pub fn render_conv_json(s: &ConvCheckSettings, r: &SpecReport) -> String {
    let json = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "system": match s.model { ConvModel::Layered(_) => "conv", ConvModel::Deq(_) => "deq" },
        "settings": format!("{s:?}"),
        "report": r,
        "passed": r.passed(),
    });
    serde_json::to_string_pretty(&json).expect("report serialises")
}
