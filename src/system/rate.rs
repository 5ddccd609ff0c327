//! The rate network of spec 1.1-1.2: hidden units v and output units y,
//!
//! ```text
//! tau_v dv/dt = -v + W s(v) + b + E x + c
//! tau_v dy/dt = -y + D s(v) + d
//! ```
//!
//! with phi = (v, y). The layered ("ff") net is the same system with a block-structured
//! W: layer k+1 receives only `W_k s(v_k)`, the input reaches only the first layer
//! (E, c on layer 1, b on layers 2..L) and y reads only the last layer. Its parameters
//! are stored at full size with a 0/1 mask that keeps the structure through learning.

mod kernel;

use super::{
    ControlEntry, EquilibriumSystem, FieldKernels, KolenPollack, RateChange, SinglePrecision,
};
use crate::error::{ensure_finite, LcsimError, Result};
use crate::numerics::activation::Activation;
use crate::numerics::linalg::{gemm, mul, mul_tr, Op};
use crate::numerics::rng::Rng;
use crate::system::params::Params;
use kernel::{RateKernel, SingleRate};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Index of W (n_h x n_h, recurrent) in the parameter list.
pub const W: usize = 0;
/// Index of b (n_h).
pub const B: usize = 1;
/// Index of E (n_h x n_x, encoder).
pub const E: usize = 2;
/// Index of c (n_h).
pub const C: usize = 3;
/// Index of D (n_y x n_h, decoder).
pub const D: usize = 4;
/// Index of d (n_y).
pub const D_BIAS: usize = 5;

/// Connectivity of the hidden units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Dense recurrent W over `hidden` units (reference "rnn").
    Recurrent { hidden: usize },
    /// Layers of the given sizes, W feeding layer k into k+1 only (reference "ff": [256, 256]).
    Layered { layers: Vec<usize> },
}

impl Topology {
    /// Total number of hidden units n_h.
    pub fn hidden_units(&self) -> usize {
        match self {
            Topology::Recurrent { hidden } => *hidden,
            Topology::Layered { layers } => layers.iter().sum(),
        }
    }

    /// Row ranges of the hidden layers (one range for the recurrent net).
    pub fn layer_ranges(&self) -> Vec<Range<usize>> {
        match self {
            Topology::Recurrent { hidden } => std::iter::once(0..*hidden).collect(),
            Topology::Layered { layers } => {
                let mut start = 0;
                layers
                    .iter()
                    .map(|&n| {
                        start += n;
                        start - n..start
                    })
                    .collect()
            }
        }
    }
}

/// The rate network with its parameters (rows = postsynaptic).
#[derive(Clone, Debug)]
pub struct RateNetwork {
    n_x: usize,
    n_y: usize,
    activation: Activation,
    topology: Topology,
    params: Params,
    mask: Option<Params>,
}

impl RateNetwork {
    /// A network initialised as PyTorch's Linear layers: every weight and bias uniform in
    /// (-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in being the presynaptic layer's size, drawn
    /// in the order W, b, E, c, D, d, row-major (entries a layered net lacks are drawn too,
    /// then zeroed, so the stream does not depend on the topology's details).
    pub fn new(
        n_x: usize,
        topology: Topology,
        n_y: usize,
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        validate_sizes(n_x, &topology, n_y)?;
        let n_h = topology.hidden_units();
        let ranges = topology.layer_ranges();
        // fan_in of hidden row i's recurrent input: the size of the layer before its own.
        let recurrent_fan_in = |i: usize| match &topology {
            Topology::Recurrent { hidden } => *hidden,
            Topology::Layered { .. } => {
                let k = ranges.iter().position(|r| r.contains(&i)).unwrap_or(0);
                ranges[k.saturating_sub(1)].len()
            }
        };
        let last_layer = ranges[ranges.len() - 1].len();
        let shapes = param_shapes(n_x, n_h, n_y);
        let mut rng = Rng::seed_from_u64(seed);
        let entries = shapes
            .iter()
            .zip(PARAM_NAMES)
            .enumerate()
            .map(|(t, (&(r, c), name))| {
                let mut m = DMatrix::zeros(r, c);
                for i in 0..r {
                    let fan_in = match t {
                        W | B => recurrent_fan_in(i),
                        E | C => n_x,
                        _ => last_layer,
                    };
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    for j in 0..c {
                        m[(i, j)] = rng.uniform_range(-bound, bound);
                    }
                }
                (name.to_string(), m)
            })
            .collect();
        let mut net = RateNetwork {
            n_x,
            n_y,
            activation,
            params: Params::new(entries),
            mask: None,
            topology,
        };
        net.mask = net.structure_mask();
        if let Some(mask) = &net.mask {
            net.params.mask_with(mask);
        }
        Ok(net)
    }

    /// A network from full-size parameters (W n_h x n_h, b, E, c, D, d); for the layered
    /// topology every entry outside the layer structure must be zero.
    pub fn from_params(
        n_x: usize,
        topology: Topology,
        n_y: usize,
        activation: Activation,
        params: Params,
    ) -> Result<Self> {
        validate_sizes(n_x, &topology, n_y)?;
        let shapes = param_shapes(n_x, topology.hidden_units(), n_y);
        if params.len() != 6 {
            return Err(LcsimError::Shape {
                field: "params".into(),
                expected: "6 tensors W, b, E, c, D, d".into(),
                found: format!("{} tensors", params.len()),
            });
        }
        for ((name, m), (&(r, c), expected)) in params.iter().zip(shapes.iter().zip(PARAM_NAMES)) {
            if name != expected || m.shape() != (r, c) {
                return Err(LcsimError::Shape {
                    field: expected.into(),
                    expected: format!("{expected}: {r} x {c}"),
                    found: format!("{name}: {} x {}", m.nrows(), m.ncols()),
                });
            }
            ensure_finite(name, m.as_slice())?;
        }
        let mut net = RateNetwork {
            n_x,
            n_y,
            activation,
            topology,
            params,
            mask: None,
        };
        net.mask = net.structure_mask();
        if let Some(mask) = &net.mask {
            for ((name, m), (_, k)) in net.params.iter().zip(mask.iter()) {
                if m.iter().zip(k.iter()).any(|(v, k)| *k == 0.0 && *v != 0.0) {
                    return Err(crate::error::invalid(
                        name,
                        "non-zero entries outside the layer structure",
                        "zeros wherever the layered topology has no connection",
                    ));
                }
            }
        }
        Ok(net)
    }

    /// The parameters as arrays in the interchange layout: full W, b, E, c, D, d for the
    /// recurrent net; for the layered net only the existing blocks: E, c (layer 1),
    /// W, b (layer 1 -> 2; `W1`, `b1`, `W2`, ... when there are more than two layers), D, d.
    pub fn named_arrays(&self) -> Vec<(String, DMatrix<f64>)> {
        self.named_arrays_of(&self.params)
    }

    /// [`RateNetwork::named_arrays`] for another tensor set of the same layout (an update
    /// or a gradient of this network).
    pub fn named_arrays_of(&self, p: &Params) -> Vec<(String, DMatrix<f64>)> {
        let ranges = self.topology.layer_ranges();
        match &self.topology {
            Topology::Recurrent { .. } => {
                p.iter().map(|(n, m)| (n.to_string(), m.clone())).collect()
            }
            Topology::Layered { .. } => {
                let first = ranges[0].clone();
                let last = ranges[ranges.len() - 1].clone();
                let mut out = vec![
                    (
                        "E".to_string(),
                        p.tensor(E).rows_range(first.clone()).into_owned(),
                    ),
                    ("c".to_string(), p.tensor(C).rows_range(first).into_owned()),
                ];
                for (k, pair) in ranges.windows(2).enumerate() {
                    let (src, dst) = (pair[0].clone(), pair[1].clone());
                    let (wn, bn) = block_names(ranges.len(), k);
                    let block = p
                        .tensor(W)
                        .view((dst.start, src.start), (dst.len(), src.len()));
                    out.push((wn, block.into_owned()));
                    out.push((bn, p.tensor(B).rows_range(dst).into_owned()));
                }
                out.push((
                    "D".to_string(),
                    p.tensor(D).columns_range(last).into_owned(),
                ));
                out.push(("d".to_string(), p.tensor(D_BIAS).clone()));
                out
            }
        }
    }

    /// The inverse of [`RateNetwork::named_arrays`]: sizes are read from the arrays
    /// (`layered` selects the layout); 1-D bias arrays are accepted as n x 1.
    pub fn from_named_arrays(
        arrays: &BTreeMap<String, DMatrix<f64>>,
        layered: bool,
        activation: Activation,
    ) -> Result<Self> {
        let get = |name: &str| -> Result<&DMatrix<f64>> {
            arrays.get(name).ok_or_else(|| LcsimError::MissingArray {
                name: name.to_string(),
                path: Default::default(),
                required: if layered {
                    "E, c, W, b (or W1, b1, ...), D, d".into()
                } else {
                    "W, b, E, c, D, d".into()
                },
            })
        };
        let (e, d) = (get("E")?, get("D")?);
        let (n_x, n_y) = (e.ncols(), d.nrows());
        if !layered {
            let params = Params::new(
                PARAM_NAMES
                    .iter()
                    .map(|&n| get(n).map(|m| (n.to_string(), m.clone())))
                    .collect::<Result<_>>()?,
            );
            let hidden = e.nrows();
            return Self::from_params(n_x, Topology::Recurrent { hidden }, n_y, activation, params);
        }
        // Layer sizes: E gives layer 1, each W block the next one.
        let n_blocks = if arrays.contains_key("W") {
            1
        } else {
            (1..)
                .take_while(|k| arrays.contains_key(&format!("W{k}")))
                .count()
        };
        let mut layers = vec![e.nrows()];
        for k in 0..n_blocks {
            layers.push(get(&block_names(n_blocks + 1, k).0)?.nrows());
        }
        let topology = Topology::Layered { layers };
        validate_sizes(n_x, &topology, n_y)?;
        let ranges = topology.layer_ranges();
        let n_h = topology.hidden_units();
        let mut full: Vec<DMatrix<f64>> = param_shapes(n_x, n_h, n_y)
            .iter()
            .map(|&(r, c)| DMatrix::zeros(r, c))
            .collect();
        let first = ranges[0].clone();
        let last = ranges[ranges.len() - 1].clone();
        // Every block must have exactly the size of the layers it connects.
        let (h1, h_last) = (first.len(), last.len());
        place(&mut full[E], get("E")?, (first.start, 0), (h1, n_x), "E")?;
        place(&mut full[C], get("c")?, (first.start, 0), (h1, 1), "c")?;
        for (k, pair) in ranges.windows(2).enumerate() {
            let (wn, bn) = block_names(ranges.len(), k);
            let (src, dst) = (&pair[0], &pair[1]);
            let at = (dst.start, src.start);
            place(&mut full[W], get(&wn)?, at, (dst.len(), src.len()), &wn)?;
            place(&mut full[B], get(&bn)?, (dst.start, 0), (dst.len(), 1), &bn)?;
        }
        place(&mut full[D], get("D")?, (0, last.start), (n_y, h_last), "D")?;
        place(&mut full[D_BIAS], get("d")?, (0, 0), (n_y, 1), "d")?;
        let params = Params::new(
            PARAM_NAMES
                .iter()
                .zip(full)
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
        );
        Self::from_params(n_x, topology, n_y, activation, params)
    }

    /// Input dimension n_x.
    pub fn n_x(&self) -> usize {
        self.n_x
    }
    /// Hidden units n_h.
    pub fn n_h(&self) -> usize {
        self.topology.hidden_units()
    }
    /// Output units n_y.
    pub fn n_y(&self) -> usize {
        self.n_y
    }
    /// The rate nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// The connectivity.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
    /// The 0/1 structure mask of the layered net (None for the recurrent net).
    pub fn mask(&self) -> Option<&Params> {
        self.mask.as_ref()
    }

    /// Rates s(v) of the hidden rows of phi.
    pub fn rates(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        self.rates_of(phi.as_view())
    }

    /// [`RateNetwork::rates`] of a view ([`RateKernel::rates_of`]).
    fn rates_of(&self, phi: DMatrixView<'_, f64>) -> DMatrix<f64> {
        self.kernel().rates_of(phi)
    }

    /// The hot loops' kernel on this network's own weights (f64).
    fn kernel(&self) -> RateKernel<'_, f64> {
        RateKernel {
            w: self.params.tensor(W).as_view(),
            d: self.params.tensor(D).as_view(),
            activation: self.activation,
        }
    }

    /// The forward pass of the layered net, one sweep through the layers:
    /// v1 = E x + c, v_{k+1} = W_k s(v_k) + b_k, y = D s(v_L) + d. Returns phi = (v, y).
    /// For the recurrent net this is a single sweep, not an equilibrium.
    pub fn forward_pass(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let p = &self.params;
        let ranges = self.topology.layer_ranges();
        let batch = x.ncols();
        let mut phi = DMatrix::zeros(self.state_dim(), batch);
        let first = ranges[0].clone();
        let mut v1 = mul(p.tensor(E).rows_range(first.clone()), x.as_view());
        add_bias(&mut v1, &p.tensor(C).rows_range(first.clone()).into_owned());
        phi.rows_range_mut(first).copy_from(&v1);
        for pair in ranges.windows(2) {
            let (src, dst) = (pair[0].clone(), pair[1].clone());
            let s = phi.rows_range(src.clone()).map(|v| self.activation.rate(v));
            let block = p
                .tensor(W)
                .view((dst.start, src.start), (dst.len(), src.len()));
            let mut next = mul(block, s.as_view());
            add_bias(&mut next, &p.tensor(B).rows_range(dst.clone()).into_owned());
            phi.rows_range_mut(dst).copy_from(&next);
        }
        let last = ranges[ranges.len() - 1].clone();
        let s = phi
            .rows_range(last.clone())
            .map(|v| self.activation.rate(v));
        let mut y = mul(p.tensor(D).columns_range(last), s.as_view());
        add_bias(&mut y, p.tensor(D_BIAS));
        let n_h = self.n_h();
        phi.rows_range_mut(n_h..n_h + self.n_y).copy_from(&y);
        phi
    }

    fn structure_mask(&self) -> Option<Params> {
        let Topology::Layered { .. } = &self.topology else {
            return None;
        };
        let ranges = self.topology.layer_ranges();
        let mut mask = self.params.zeros_like();
        let first = ranges[0].clone();
        let last = ranges[ranges.len() - 1].clone();
        mask.tensor_mut(E).rows_range_mut(first.clone()).fill(1.0);
        mask.tensor_mut(C).rows_range_mut(first).fill(1.0);
        for pair in ranges.windows(2) {
            let (src, dst) = (pair[0].clone(), pair[1].clone());
            mask.tensor_mut(W)
                .view_mut((dst.start, src.start), (dst.len(), src.len()))
                .fill(1.0);
            mask.tensor_mut(B).rows_range_mut(dst).fill(1.0);
        }
        mask.tensor_mut(D).columns_range_mut(last).fill(1.0);
        mask.tensor_mut(D_BIAS).fill(1.0);
        Some(mask)
    }
}

/// Names of the spec's parameters in storage order.
pub const PARAM_NAMES: [&str; 6] = ["W", "b", "E", "c", "D", "d"];

/// Shapes of W, b, E, c, D, d at full size.
fn param_shapes(n_x: usize, n_h: usize, n_y: usize) -> [(usize, usize); 6] {
    [
        (n_h, n_h),
        (n_h, 1),
        (n_h, n_x),
        (n_h, 1),
        (n_y, n_h),
        (n_y, 1),
    ]
}

fn block_names(n_layers: usize, k: usize) -> (String, String) {
    if n_layers == 2 {
        ("W".into(), "b".into())
    } else {
        (format!("W{}", k + 1), format!("b{}", k + 1))
    }
}

/// Copies `block`, which must have exactly `shape`, into `target` at `at`.
fn place(
    target: &mut DMatrix<f64>,
    block: &DMatrix<f64>,
    at: (usize, usize),
    shape: (usize, usize),
    name: &str,
) -> Result<()> {
    if block.shape() != shape {
        return Err(LcsimError::Shape {
            field: name.into(),
            expected: format!("{} x {}", shape.0, shape.1),
            found: format!("{} x {}", block.nrows(), block.ncols()),
        });
    }
    target.view_mut(at, shape).copy_from(block);
    Ok(())
}

fn validate_sizes(n_x: usize, topology: &Topology, n_y: usize) -> Result<()> {
    use crate::error::invalid;
    if n_x == 0 {
        return Err(invalid("model.inputs", n_x, "an integer >= 1"));
    }
    if n_y == 0 {
        return Err(invalid("model.outputs", n_y, "an integer >= 1"));
    }
    match topology {
        Topology::Recurrent { hidden: 0 } => Err(invalid("model.hidden", 0, "an integer >= 1")),
        Topology::Layered { layers } if layers.is_empty() || layers.contains(&0) => Err(invalid(
            "model.layers",
            format!("{layers:?}"),
            "a non-empty list of layer sizes >= 1",
        )),
        _ => Ok(()),
    }
}

/// Adds a bias column to every column of `m`.
fn add_bias(m: &mut DMatrix<f64>, bias: &DMatrix<f64>) {
    for mut col in m.column_iter_mut() {
        col += bias.column(0);
    }
}

/// Sums the columns of `m` into an n x 1 matrix.
fn column_sum(m: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_column_slice(m.nrows(), 1, m.column_sum().as_slice())
}

impl EquilibriumSystem for RateNetwork {
    /// The interchange layout ([`RateNetwork::named_arrays`]).
    fn exported_params(&self) -> Vec<(String, DMatrix<f64>)> {
        self.named_arrays()
    }
    fn state_dim(&self) -> usize {
        self.n_h() + self.n_y
    }
    /// The output units y, the last n_y rows.
    fn loss_rows(&self) -> Range<usize> {
        self.n_h()..self.n_h() + self.n_y
    }
    /// The outputs are leaky readouts of the rates.
    fn control_entry(&self) -> ControlEntry {
        ControlEntry::Readout
    }
    fn input_dim(&self) -> usize {
        self.n_x
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// `(E x + b + c, d)`: the part of f that does not depend on phi.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let p = &self.params;
        let n_h = self.n_h();
        let mut drive = DMatrix::zeros(self.state_dim(), x.ncols());
        let mut hidden = drive.rows_mut(0, n_h);
        gemm(
            &mut hidden,
            1.0,
            p.tensor(E).as_view(),
            Op::Plain,
            x.as_view(),
            false,
        );
        let bias_v = p.tensor(B) + p.tensor(C);
        for mut col in drive.column_iter_mut() {
            let mut v = col.rows_mut(0, n_h);
            v += bias_v.column(0);
            let mut y = col.rows_mut(n_h, self.n_y);
            y += p.tensor(D_BIAS).column(0);
        }
        drive
    }

    /// `f_v = -v + W s(v) + drive_v`, `f_y = -y + D s(v) + drive_y`.
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64> {
        let s = self.rates(phi);
        self.driven_field(phi, drive, &s)
    }

    /// In place: `out = (W s, D s)`, then `out += drive - phi` in one pass.
    fn vector_field_driven_into(
        &self,
        phi: DMatrixView<'_, f64>,
        drive: &DMatrix<f64>,
        out: DMatrixViewMut<'_, f64>,
    ) {
        let s = self.rates_of(phi);
        self.kernel().driven_field_into(phi, drive, &s, out);
    }

    fn vjp_at_into(&self, lin: &RateLinearization, w: &DMatrix<f64>, out: DMatrixViewMut<'_, f64>) {
        self.adjoint_into(&lin.slopes, w, lin.feedback.as_deref(), out);
    }

    /// One pass for both, in place: s(v) and s'(v) are computed once.
    fn field_and_vjp_into(
        &self,
        phi: DMatrixView<'_, f64>,
        _x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        f: DMatrixViewMut<'_, f64>,
        back: DMatrixViewMut<'_, f64>,
    ) {
        self.kernel().field_and_vjp_into(phi, drive, w, f, back);
    }

    type Linearization = RateLinearization;

    /// The slopes s'(v) and, with psi, `s''(v) * (W^T psi_v + D^T psi_y)`.
    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
    ) -> RateLinearization {
        self.linearization(phi, psi, None)
    }

    /// `J (dv, dy) = (-dv + W (s'(v) dv), -dy + D (s'(v) dv))`.
    fn jvp_at(&self, lin: &RateLinearization, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        let sd = lin.slopes.component_mul(&dphi.rows(0, self.n_h()));
        let mut out = self.forward(&sd);
        out -= dphi;
        out
    }

    /// `J^T (wv, wy) = (-wv + s'(v) * (W^T wv + D^T wy), -wy)` (`B wv + G wy` when linearised
    /// with feedback weights).
    fn vjp_at(&self, lin: &RateLinearization, w: &DMatrix<f64>) -> DMatrix<f64> {
        self.adjoint(&lin.slopes, w, lin.feedback.as_deref())
    }

    /// `(s''(v) * (W^T psi_v + D^T psi_y) * dv, 0)`.
    fn second_order_at(
        &self,
        lin: &RateLinearization,
        dphi: &DMatrix<f64>,
    ) -> Option<DMatrix<f64>> {
        let n_h = self.n_h();
        let hv = match &lin.curvature_feedback {
            Some(c) => c.component_mul(&dphi.rows(0, n_h)),
            None => DMatrix::zeros(n_h, dphi.ncols()),
        };
        Some(stack(&hv, &DMatrix::zeros(self.n_y, dphi.ncols())))
    }

    /// One pass for both: s(v) and s'(v) are computed once.
    fn field_and_vjp(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        self.field_and_back(phi, drive, w, None)
    }

    /// `W: psi_v s(v)^T, b: psi_v, E: psi_v x^T, c: psi_v, D: psi_y s(v)^T, d: psi_y`,
    /// summed over samples and masked to the topology.
    fn param_vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params {
        let n_h = self.n_h();
        let s = self.rates(phi);
        let pv = psi.rows(0, n_h);
        let py = psi.rows(n_h, self.n_y);
        let bias_v = column_sum(&pv.into_owned());
        let tensors = [
            mul_tr(pv, s.as_view()),
            bias_v.clone(),
            mul_tr(pv, x.as_view()),
            bias_v,
            mul_tr(py, s.as_view()),
            column_sum(&py.into_owned()),
        ];
        let mut out = Params::new(
            PARAM_NAMES
                .iter()
                .zip(tensors)
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
        );
        if let Some(mask) = &self.mask {
            out.mask_with(mask);
        }
        out
    }

    /// The layered net's forward pass (exact); a recurrent net has none.
    fn exact_free_equilibrium(&self, x: &DMatrix<f64>) -> Option<DMatrix<f64>> {
        matches!(self.topology, Topology::Layered { .. }).then(|| self.forward_pass(x))
    }

    /// W and D rounded to f32.
    fn single_precision(&self) -> Option<Arc<dyn SinglePrecision>> {
        let round = |m: &DMatrix<f64>| m.map(|x| x as f32);
        Some(Arc::new(SingleRate {
            w: round(self.params.tensor(W)),
            d: round(self.params.tensor(D)),
            activation: self.activation,
        }))
    }

    fn kolen_pollack(&self) -> Option<&dyn KolenPollack<RateLinearization>> {
        Some(self)
    }

    fn rate_change(&self) -> Option<&dyn RateChange> {
        Some(self)
    }
}

impl KolenPollack<RateLinearization> for RateNetwork {
    /// B (n_h x n_h, the transposed structure of W) PyTorch-uniform, then each block scaled
    /// to unit Frobenius norm; G (n_h x n_y, rows of the last layer) normal with variance
    /// 1 / (n_y n_last) (spec 3.2, reference initialisation).
    fn init_feedback(&self, seed: u64) -> Params {
        let n_h = self.n_h();
        let ranges = self.topology.layer_ranges();
        let mut rng = Rng::seed_from_u64(seed);
        let mut b = DMatrix::zeros(n_h, n_h);
        let blocks: Vec<(Range<usize>, Range<usize>)> = match &self.topology {
            Topology::Recurrent { .. } => vec![(0..n_h, 0..n_h)],
            // W maps layer k to k+1, so B maps layer k+1 back to k.
            Topology::Layered { .. } => ranges
                .windows(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        };
        for (rows, cols) in blocks {
            let bound = 1.0 / (cols.len() as f64).sqrt();
            let mut block = b.view_mut((rows.start, cols.start), (rows.len(), cols.len()));
            for i in 0..rows.len() {
                for j in 0..cols.len() {
                    block[(i, j)] = rng.uniform_range(-bound, bound);
                }
            }
            let norm = block.norm();
            if norm > 0.0 {
                block /= norm;
            }
        }
        let last = ranges[ranges.len() - 1].clone();
        let sd = 1.0 / ((self.n_y * last.len()) as f64).sqrt();
        let mut g = DMatrix::zeros(n_h, self.n_y);
        for i in last {
            for j in 0..self.n_y {
                g[(i, j)] = sd * rng.normal();
            }
        }
        Params::new(vec![("B".into(), b), ("G".into(), g)])
    }

    /// `(B: (Delta W)^T, G: (Delta D)^T)`.
    fn transposed_update(&self, update: &Params) -> Params {
        Params::new(vec![
            ("B".into(), update.tensor(W).transpose()),
            ("G".into(), update.tensor(D).transpose()),
        ])
    }

    fn linearize_with_feedback(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
        feedback: &Arc<Params>,
    ) -> RateLinearization {
        self.linearization(phi, psi, Some(feedback))
    }

    fn field_and_feedback(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: &Arc<Params>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        self.field_and_back(phi, drive, w, Some(feedback))
    }

    /// The angles between B and W^T and between G and D^T.
    fn feedback_angles(&self, feedback: &Params) -> Vec<f64> {
        let p = &self.params;
        vec![
            angle_degrees(feedback.tensor(0), &p.tensor(W).transpose()),
            angle_degrees(feedback.tensor(1), &p.tensor(D).transpose()),
        ]
    }

    /// W, b, D and d (the reference's `kp_wd`; E and c do not decay).
    fn decaying_params(&self) -> Vec<usize> {
        vec![W, B, D, D_BIAS]
    }
}

impl RateChange for RateNetwork {
    /// psi with its hidden rows replaced by `s'(v) * e`.
    fn rate_change(&self, phi: &DMatrix<f64>, psi: &DMatrix<f64>) -> DMatrix<f64> {
        let a = self.activation;
        let n_h = self.n_h();
        let mut out = psi.clone();
        out.rows_mut(0, n_h)
            .zip_apply(&phi.rows(0, n_h), |e, v| *e *= a.slope(v));
        out
    }
}

/// The angle in degrees between two matrices seen as vectors (90 when either is zero).
pub fn angle_degrees(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    let den = a.norm() * b.norm();
    let cos = if den > 0.0 { a.dot(b) / den } else { 0.0 };
    cos.clamp(-1.0, 1.0).acos().to_degrees()
}

impl RateNetwork {
    /// The slopes s'(v) and, with psi, `s''(v) * (W^T psi_v + D^T psi_y)` (`B psi_v + G psi_y`
    /// with feedback weights B, G, which then also stand in for the transposes).
    fn linearization(
        &self,
        phi: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
        feedback: Option<&Arc<Params>>,
    ) -> RateLinearization {
        let a = self.activation;
        let (s, slopes) = self.rates_and_slopes(phi.as_view());
        let curvature_feedback = psi.map(|w| {
            let back = self.feedback(w, feedback.map(|f| &**f));
            s.zip_map(&back, |s, g| a.curvature_at_rate(s) * g)
        });
        RateLinearization {
            slopes,
            curvature_feedback,
            feedback: feedback.cloned(),
        }
    }

    /// One pass for `(f, J^T w)` (or the feedback path's product): s(v), s'(v) computed once.
    fn field_and_back(
        &self,
        phi: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: Option<&Arc<Params>>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let (s, slopes) = self.rates_and_slopes(phi.as_view());
        let back = self.adjoint(&slopes, w, feedback.map(|f| &**f));
        (self.driven_field(phi, drive, &s), back)
    }

    /// The rates s(v) and slopes s'(v) of the hidden rows of phi (n_h x B each).
    fn rates_and_slopes(&self, phi: DMatrixView<'_, f64>) -> (DMatrix<f64>, DMatrix<f64>) {
        self.kernel().rates_and_slopes(phi)
    }

    /// `(W r, D r)` stacked: what the hidden rates r (n_h x B) send to every unit.
    fn forward(&self, r: &DMatrix<f64>) -> DMatrix<f64> {
        let p = &self.params;
        let n_h = self.n_h();
        let mut out = DMatrix::zeros(self.state_dim(), r.ncols());
        gemm(
            &mut out.rows_mut(0, n_h),
            1.0,
            p.tensor(W).as_view(),
            Op::Plain,
            r.as_view(),
            false,
        );
        gemm(
            &mut out.rows_mut(n_h, self.n_y),
            1.0,
            p.tensor(D).as_view(),
            Op::Plain,
            r.as_view(),
            false,
        );
        out
    }

    /// `f = -phi + (W s, D s) + drive` for rates s = s(v).
    fn driven_field(
        &self,
        phi: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        s: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        let mut f = self.forward(s);
        f += drive;
        f -= phi;
        f
    }

    /// [`RateKernel::adjoint_into`] with W, D or the learned feedback weights (B, G).
    fn adjoint_into(
        &self,
        slopes: &DMatrix<f64>,
        w: &DMatrix<f64>,
        learned: Option<&Params>,
        out: DMatrixViewMut<'_, f64>,
    ) {
        let learned = learned.map(|fb| (fb.tensor(0).as_view(), fb.tensor(1).as_view()));
        self.kernel().adjoint_into(slopes, w, learned, out);
    }

    /// The feedback that hidden units receive from a signal w = (wv, wy): `W^T wv + D^T wy`,
    /// or `B wv + G wy` with learned feedback weights (B, G).
    fn feedback(&self, w: &DMatrix<f64>, learned: Option<&Params>) -> DMatrix<f64> {
        let n_h = self.n_h();
        let (wv, wy) = (w.rows(0, n_h), w.rows(n_h, self.n_y));
        let mut back = DMatrix::zeros(n_h, w.ncols());
        let (first, second, op) = match learned {
            None => (self.params.tensor(W), self.params.tensor(D), Op::Transposed),
            Some(fb) => (fb.tensor(0), fb.tensor(1), Op::Plain),
        };
        gemm(&mut back, 1.0, first.as_view(), op, wv, false);
        gemm(&mut back, 1.0, second.as_view(), op, wy, true);
        back
    }

    /// `J^T w = (-wv + s'(v) * feedback(w), -wy)` for the slopes s'(v) (n_h x B).
    fn adjoint(
        &self,
        slopes: &DMatrix<f64>,
        w: &DMatrix<f64>,
        learned: Option<&Params>,
    ) -> DMatrix<f64> {
        let n_h = self.n_h();
        let back = self.feedback(w, learned);
        let mut out = -w;
        out.rows_mut(0, n_h)
            .zip_zip_apply(slopes, &back, |o, sl, g| *o += sl * g);
        out
    }
}

/// The rate network linearised at phi (see [`EquilibriumSystem::linearize`]).
#[derive(Clone, Debug)]
pub struct RateLinearization {
    /// s'(v), n_h x B.
    slopes: DMatrix<f64>,
    /// `s''(v) * feedback(psi)`, n_h x B, when a psi was given.
    curvature_feedback: Option<DMatrix<f64>>,
    /// Learned feedback weights (B, G) that replace W^T, D^T in the transposed products.
    feedback: Option<Arc<Params>>,
}

/// Stacks two matrices with equal column counts vertically.
pub fn stack(top: &DMatrix<f64>, bottom: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = DMatrix::zeros(top.nrows() + bottom.nrows(), top.ncols());
    out.rows_mut(0, top.nrows()).copy_from(top);
    out.rows_mut(top.nrows(), bottom.nrows()).copy_from(bottom);
    out
}
