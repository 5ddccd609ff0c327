//! How well each least-control variant's update follows the gradient as the control weakens
//! (spec 2.1, 5, 6.4), on a fixed batch of inputs and targets.
//!
//! For a controller leak alpha the relaxed least-control objective is
//! `H_alpha(theta) = min_phi 1/2 |f(phi, theta, x)|^2 + beta L(phi)` with
//! `beta = k_i / alpha + k_p`, and for LCP-DI (and LCP-EBD, whose equilibrium is the same
//! minimiser) the update is exactly `Delta theta = -grad_theta H_alpha` (spec 2.1). The gradient
//! it is compared with is the recurrent-backprop gradient of the free loss,
//!
//! ```text
//! g = grad_theta L(phi0(theta))            (alpha-independent; spec 5)
//! ```
//!
//! and as alpha -> infinity `grad_theta H_alpha / beta -> g`, so
//!
//! ```text
//! cosine(Delta theta, -g)        -> 1
//! |Delta theta| / (beta |g|)     -> 1
//! ```
//!
//! for LCP-DI and LCP-EBD. LCP-KP and LCP-LF replace the transposed weights of the dynamic
//! inversion by learned feedback weights, so their limits tell how well that feedback stands in
//! for `J_f^T`. Every point reports how many of its controlled solves converged; the update
//! and the gradient are both computed on the samples that `method.on_unconverged` keeps
//! (`"use"`: every sample with a finite state), so the two always cover the same samples.

use crate::config::{Config, Method};
use crate::control::free_equilibrium;
use crate::control::CoupledSystem;
use crate::error::{invalid, Result};
use crate::learn::rbp::rbp_gradient;
use crate::learn::variant::ControlledEquilibrium;
use crate::solve::BatchSteadyState;
use crate::studies::progress;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::train::diagnostics::{aligned_update, AlignedUpdate};
use nalgebra::DMatrix;
use serde::Serialize;

pub use crate::train::diagnostics::compare_with_gradient;

/// The alphas of an alignment study: finite, > 0, distinct; returned increasing. Errors name
/// `field` (the config key or flag the alphas came from).
pub fn validate_alphas(field: &str, alphas: &[f64]) -> Result<Vec<f64>> {
    const ALLOWED: &str =
        "a non-empty list of distinct finite numbers > 0, e.g. 0.001,0.01,0.1,1,10,100,1000";
    if alphas.is_empty() {
        return Err(invalid(field, "an empty list", ALLOWED));
    }
    if let Some(a) = alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
        return Err(invalid(field, a, ALLOWED));
    }
    let mut sorted = alphas.to_vec();
    sorted.sort_by(f64::total_cmp);
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(field, format!("{} given twice", w[0]), ALLOWED));
    }
    Ok(sorted)
}

/// One variant at one alpha.
#[derive(Clone, Debug, Serialize)]
pub struct AlignmentPoint {
    pub alpha: f64,
    /// `k_i / alpha + k_p`.
    pub beta: f64,
    /// `cosine(Delta theta, -g)`.
    pub cosine: f64,
    /// `|Delta theta| / (beta |g|)`.
    pub norm_ratio: f64,
    /// `|Delta theta|`.
    pub update_norm: f64,
    /// `|g|` over the samples used.
    pub gradient_norm: f64,
    /// Batch-combined control magnitude `combine * sum_samples 1/2 |psi*|^2` over the samples
    /// used (the relaxed least-control objective's control part).
    pub h: f64,
    /// Samples whose controlled solve converged.
    pub converged: usize,
    /// Samples in the batch (controlled solves).
    pub solves: usize,
    /// Samples in Delta theta and g (those `method.on_unconverged` keeps and whose free and
    /// adjoint solves are usable).
    pub samples_used: usize,
    /// Largest final residual of the controlled solves.
    pub max_residual: f64,
    /// Mean solver steps of the controlled solves.
    pub mean_steps: f64,
}

/// One variant on one network over all alphas, with the alpha-independent free and adjoint
/// solves behind g.
#[derive(Clone, Debug, Serialize)]
pub struct AlignmentCurve {
    /// Which network (e.g. "untrained", "trained").
    pub network: String,
    pub variant: Method,
    pub samples: usize,
    /// Free solves that converged (all of them on a layered net, whose free equilibrium is
    /// the forward pass).
    pub free_converged: usize,
    /// Adjoint (RBP) solves that converged.
    pub adjoint_converged: usize,
    /// `|g|` over the whole batch.
    pub gradient_norm: f64,
    pub points: Vec<AlignmentPoint>,
}

impl AlignmentCurve {
    /// Controlled solves that converged, over all alphas, and their number.
    pub fn converged(&self) -> (usize, usize) {
        self.points
            .iter()
            .fold((0, 0), |(c, n), p| (c + p.converged, n + p.solves))
    }
}

/// The network an [`AlignmentCurve`] is measured on.
pub struct Subject<'a> {
    /// Label of the curve ("untrained", "trained", ...).
    pub network: String,
    pub variant: Method,
    pub net: &'a RateNetwork,
    /// The variant's learned feedback weights (LCP-KP: B, G; LCP-LF: Q).
    pub feedback: Option<&'a Params>,
}

/// The alignment curve of one variant on one network and batch (inputs n_x x B, targets
/// n_y x B) over `alphas` (validated with [`validate_alphas`]). From `config`: the loss and
/// its scale (`[method]`; the batch is one batch of B samples), the controller's gains and time
/// constants except alpha (`[controller]`, `[dynamics]`), `method.controlled_start`,
/// `method.on_unconverged`, LCP-EBD's descent (`[ebd]`, the gradient flow by default) and the
/// solver of every solve (`[solver]`).
pub fn alignment_curve(
    config: &Config,
    subject: &Subject<'_>,
    inputs: &DMatrix<f64>,
    targets: &DMatrix<f64>,
    alphas: &[f64],
) -> Result<AlignmentCurve> {
    let alphas = validate_alphas("alphas", alphas)?;
    if !subject.variant.is_least_control() {
        return Err(invalid(
            "variant",
            subject.variant.name(),
            "a least-control method: \"lcp-di\", \"lcp-kp\", \"lcp-lf\" or \"lcp-ebd\"",
        ));
    }
    let net = subject.net;
    let b = inputs.ncols();
    let objective = config.objective(b);
    let free = CoupledSystem::new(
        net,
        inputs.clone(),
        targets.clone(),
        objective,
        config.dynamics.tau_v,
        None,
    )?;
    let (phi0, free_solve) = free_equilibrium(&free, &config.solver);
    let (gradient, adjoints) = rbp_gradient(&free, &phi0, &config.solver);
    let count = |s: &BatchSteadyState| s.records.iter().filter(|r| r.converged()).count();
    let mut points = Vec::with_capacity(alphas.len());
    for (i, &alpha) in alphas.iter().enumerate() {
        let phase = format!(
            "align: {} {} alpha {alpha:e}",
            subject.network,
            subject.variant.name()
        );
        progress::report(&phase, i, alphas.len());
        let mut controller = config.controller_settings();
        controller.alpha = alpha;
        let settings = config.variant(subject.variant, controller);
        let eq = ControlledEquilibrium::find(&settings, subject.feedback, &free, &phi0)?;
        let AlignedUpdate {
            update,
            gradient: g,
            h,
            samples_used,
        } = aligned_update(
            config,
            &free,
            &phi0,
            free_solve.as_ref(),
            &gradient,
            &adjoints,
            &eq,
        )?;
        let beta = controller.beta();
        let (cosine, norm_ratio, update_norm, gradient_norm) = match (&update, &g) {
            (Some(u), Some(g)) => {
                let (c, r) = compare_with_gradient(u, g, beta);
                (c, r, u.norm(), g.norm())
            }
            _ => (f64::NAN, f64::NAN, f64::NAN, f64::NAN),
        };
        points.push(AlignmentPoint {
            alpha,
            beta,
            cosine,
            norm_ratio,
            update_norm,
            gradient_norm,
            h,
            converged: count(&eq.solve),
            solves: eq.solve.records.len(),
            samples_used,
            max_residual: eq.solve.max_residual(),
            mean_steps: eq.solve.mean_steps(),
        });
    }
    Ok(AlignmentCurve {
        network: subject.network.clone(),
        variant: subject.variant,
        samples: b,
        free_converged: free_solve.as_ref().map_or(b, count),
        adjoint_converged: count(&adjoints),
        gradient_norm: gradient.norm(),
        points,
    })
}

/// Column names of [`alignment_csv`].
pub const CSV_COLUMNS: [&str; 18] = [
    "network",
    "variant",
    "alpha",
    "beta",
    "cosine",
    "norm_ratio",
    "update_norm",
    "gradient_norm",
    "h",
    "converged",
    "solves",
    "fraction_converged",
    "samples_used",
    "max_residual",
    "mean_steps",
    "free_converged",
    "adjoint_converged",
    "samples",
];

/// One CSV row per curve and alpha (columns [`CSV_COLUMNS`]; NaN where undefined).
pub fn alignment_csv(curves: &[AlignmentCurve]) -> String {
    let rows = curves.iter().flat_map(|c| {
        c.points.iter().map(move |p| {
            [
                c.network.clone(),
                c.variant.name().to_string(),
                format!("{:e}", p.alpha),
                format!("{:e}", p.beta),
                format!("{}", p.cosine),
                format!("{}", p.norm_ratio),
                format!("{}", p.update_norm),
                format!("{}", p.gradient_norm),
                format!("{}", p.h),
                p.converged.to_string(),
                p.solves.to_string(),
                format!("{}", p.converged as f64 / p.solves.max(1) as f64),
                p.samples_used.to_string(),
                format!("{}", p.max_residual),
                format!("{}", p.mean_steps),
                c.free_converged.to_string(),
                c.adjoint_converged.to_string(),
                c.samples.to_string(),
            ]
        })
    });
    crate::io::csv_text::csv_text(CSV_COLUMNS, rows)
}

/// The study's figure: two panels against alpha (log axis), `cosine(Delta theta, -g)` and
/// `|Delta theta| / (beta |g|)` (log axis), one colour per variant (round markers for DI and
/// LF, square for KP and EBD, so that EBD shows on top of DI), solid lines for the network
/// "untrained" and dashed lines for the others ("trained").
pub fn draw_alignment(
    curves: &[AlignmentCurve],
    title: &str,
    path: &std::path::Path,
    format: crate::plot::FigureFormat,
) -> Result<()> {
    use crate::plot::{line_panels, Curve, CurveStyle, LinePanel, Series, YScale};
    let order = [Method::LcpDi, Method::LcpKp, Method::LcpLf, Method::LcpEbd];
    let mut cos = Vec::new();
    let mut ratio = Vec::new();
    for c in curves {
        let color = order.iter().position(|m| *m == c.variant).unwrap_or(4);
        let style = CurveStyle {
            color,
            dashed: c.network != "untrained",
            square: matches!(c.variant, Method::LcpKp | Method::LcpEbd),
            points_only: false,
            smooth: false,
        };
        let label = format!("{} {}", c.variant.name().to_uppercase(), c.network);
        let xs: Vec<f64> = c.points.iter().map(|p| p.alpha).collect();
        cos.push(Curve {
            xs: xs.clone(),
            series: Series::new(label.clone(), c.points.iter().map(|p| p.cosine).collect()),
            style,
        });
        // Undefined (NaN) ratios are skipped; a ratio is never <= 0 otherwise.
        let r: Vec<f64> = c.points.iter().map(|p| p.norm_ratio).collect();
        ratio.push(Curve {
            xs,
            series: Series::new(label, r),
            style,
        });
    }
    let panels = [
        LinePanel {
            caption: "direction".into(),
            y_label: "cosine(Δθ, −∇L)".into(),
            y_scale: YScale::Linear,
            curves: cos,
            legend: false,
        },
        LinePanel {
            caption: "magnitude".into(),
            y_label: "|Δθ| / (β |∇L|)".into(),
            y_scale: YScale::Log,
            curves: ratio,
            legend: true,
        },
    ];
    line_panels(
        &panels,
        "controller leak α (β = kᵢ/α + kₚ)",
        true,
        title,
        path,
        format,
    )
}
