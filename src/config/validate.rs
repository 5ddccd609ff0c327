//! Validation of a whole config: every value against what it allows, the model against the
//! method, and the method sections against their methods. Errors name the key.

use super::{Config, EquilibriumDefinition, Method, ModelKind};
use crate::error::{ensure_non_negative, ensure_positive, invalid, Result};

impl Config {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        match (m.kind, m.hidden.len()) {
            (_, 0) => {
                return Err(invalid(
                    "model.hidden",
                    "[]",
                    "one size (rnn) or one size per layer (ff)",
                ))
            }
            (ModelKind::Rnn, n) if n > 1 => {
                return Err(invalid(
                    "model.hidden",
                    format!("{:?}", m.hidden),
                    "one size for kind = \"rnn\"",
                ))
            }
            _ => {}
        }
        if m.hidden.contains(&0) {
            return Err(invalid(
                "model.hidden",
                format!("{:?}", m.hidden),
                "sizes >= 1",
            ));
        }
        ensure_positive("dynamics.tau_v", self.dynamics.tau_v)?;
        self.controller_settings().validate()?;
        match (self.method.name, m.kind) {
            (Method::Bp, ModelKind::Rnn) => {
                return Err(invalid(
                    "method.name",
                    "bp",
                    "\"rbp\" or a least-control method (\"lcp-di\", \"lcp-kp\", \"lcp-lf\", \"lcp-ebd\") for model.kind = \"rnn\" (bp needs a layered net)",
                ))
            }
            (Method::Rbp, ModelKind::Ff) => {
                return Err(invalid(
                    "method.name",
                    "rbp",
                    "\"bp\" or a least-control method (\"lcp-di\", \"lcp-kp\", \"lcp-lf\", \"lcp-ebd\") for model.kind = \"ff\"",
                ))
            }
            _ => {}
        }
        self.validate_meta()?;
        self.validate_conv()?;
        self.solver.validate()?;
        self.validate_euler_leak()?;
        self.validate_precision()?;
        self.validate_method_sections()?;
        self.validate_equilibrium()?;
        let t = &self.training;
        if !(0.0..=1.0).contains(&t.min_lr_factor) {
            return Err(invalid(
                "training.min_lr_factor",
                t.min_lr_factor,
                "a fraction in [0, 1]",
            ));
        }
        crate::error::ensure_thread_count("training.threads", t.threads)?;
        if t.epochs > 1_000_000 {
            return Err(invalid(
                "training.epochs",
                t.epochs,
                "an integer in 1..=1000000",
            ));
        }
        self.training.optimizer_settings(1).validate()?;
        ensure_non_negative("training.clip_norm", t.clip_norm)?;
        ensure_non_negative("training.spectral_bound", t.spectral_bound)?;
        for (key, v) in [
            ("training.epochs", t.epochs),
            ("training.batch_size", t.batch_size),
            ("training.eval_every", t.eval_every),
        ] {
            if v == 0 {
                return Err(invalid(key, 0, "an integer >= 1"));
            }
        }
        let name = &self.output.name;
        if name == "." || name == ".." || name.contains(['/', '\\']) || name.contains('\0') {
            return Err(invalid(
                "output.name",
                format!("{name:?}"),
                "one folder name inside output.dir (no '/', '\\', \".\" or \"..\"; empty = automatic)",
            ));
        }
        let d = &self.data;
        if !(d.test_fraction > 0.0 && d.test_fraction < 1.0) {
            return Err(invalid(
                "data.test_fraction",
                d.test_fraction,
                "a number in (0, 1)",
            ));
        }
        if d.synthetic_samples < 4 {
            return Err(invalid(
                "data.synthetic_samples",
                d.synthetic_samples,
                "an integer >= 4",
            ));
        }
        Ok(())
    }

    /// `model.kind = "meta"` goes with the task sources, `[meta]` and the methods that
    /// apply to an inner problem; imaml and fomaml with meta only.
    fn validate_meta(&self) -> Result<()> {
        let meta = self.model.kind == ModelKind::Meta;
        let tasks = self.data.source.is_tasks();
        if meta != tasks {
            return Err(invalid(
                "data.source",
                format!(
                    "\"{}\" with model.kind = \"{}\"",
                    self.data.source.name(),
                    if meta { "meta" } else { self.run_kind() }
                ),
                "\"sinusoid\", \"fewshot-mnist\" or \"fewshot-digits\" exactly with model.kind = \"meta\" (tasks for the inner problem)",
            ));
        }
        let name = self.method.name;
        if !meta {
            if matches!(name, Method::Imaml | Method::Fomaml) {
                return Err(invalid(
                    "method.name",
                    name.name(),
                    "\"imaml\" and \"fomaml\" with model.kind = \"meta\" only",
                ));
            }
            if self.meta.is_some() {
                return Err(invalid(
                    "[meta]",
                    "given with model.kind other than \"meta\"",
                    "[meta] only with model.kind = \"meta\"",
                ));
            }
            return Ok(());
        }
        if !matches!(
            name,
            Method::LcpDi | Method::LcpEbd | Method::Rbp | Method::Imaml | Method::Fomaml
        ) {
            return Err(invalid(
                "method.name",
                name.name(),
                "\"lcp-di\", \"lcp-ebd\", \"rbp\" (implicit gradient by the adjoint solve), \"imaml\" or \"fomaml\" for model.kind = \"meta\"",
            ));
        }
        self.meta_settings().validate()?;
        self.learner().map(|_| ())
    }

    /// Forward Euler on the controller's leak `tau_u du/dt = -alpha u + ...` multiplies u by
    /// `1 - dt alpha / tau_u` per step: it diverges once `dt alpha / tau_u >= 2`.
    fn validate_euler_leak(&self) -> Result<()> {
        let controlled = matches!(
            self.method.name,
            Method::LcpDi | Method::LcpKp | Method::LcpLf
        );
        if !controlled || self.solver.method != crate::solve::SolverMethod::Euler {
            return Ok(());
        }
        let (dt, alpha, tau_u) = (
            self.solver.euler.dt,
            self.controller.alpha,
            self.dynamics.tau_u,
        );
        if dt * alpha / tau_u >= 2.0 {
            return Err(invalid(
                "controller.alpha",
                format!("{alpha} with solver.method = \"euler\", solver.dt = {dt}, dynamics.tau_u = {tau_u} (dt * alpha / tau_u = {:.3})", dt * alpha / tau_u),
                &format!(
                    "dt * alpha / tau_u < 2, where forward Euler is stable for the controller's leak: alpha < {:.4}, or solver.dt < {:.4}, or another solver.method",
                    2.0 * tau_u / dt,
                    2.0 * tau_u / alpha
                ),
            ));
        }
        Ok(())
    }

    /// `solver.precision = "f32"`: the rate networks (rnn, ff) under LCP-DI (flow) or RBP, whose
    /// free and controlled Euler iterations have a single-precision form (BP has none to run).
    fn validate_precision(&self) -> Result<()> {
        if self.solver.precision != crate::solve::Precision::F32 {
            return Ok(());
        }
        if !matches!(self.model.kind, ModelKind::Rnn | ModelKind::Ff) {
            return Err(invalid(
                "solver.precision",
                format!("\"f32\" with model.kind = \"{}\"", self.run_kind()),
                "\"f32\" with model.kind = \"rnn\" or \"ff\" only, or \"f64\"",
            ));
        }
        let name = self.method.name;
        let flow = self.method.equilibrium == EquilibriumDefinition::Flow;
        if !(name == Method::Rbp || (name == Method::LcpDi && flow)) {
            return Err(invalid(
                "solver.precision",
                format!(
                    "\"f32\" with method.name = \"{}\", method.equilibrium = \"{}\"",
                    name.name(),
                    self.method.equilibrium.name()
                ),
                "\"f32\" with \"lcp-di\" (equilibrium \"flow\") or \"rbp\" (bp has no relaxation to run in f32), or \"f64\"",
            ));
        }
        Ok(())
    }

    /// `method.equilibrium = "branch"` needs a coupled least-control variant started at phi0.
    fn validate_equilibrium(&self) -> Result<()> {
        use super::{ControlledStart, EquilibriumDefinition};
        if self.method.equilibrium != EquilibriumDefinition::Branch {
            return Ok(());
        }
        let name = self.method.name;
        if !matches!(name, Method::LcpDi | Method::LcpKp | Method::LcpLf) {
            return Err(invalid(
                "method.equilibrium",
                format!("\"branch\" with method.name = \"{}\"", name.name()),
                "\"branch\" with \"lcp-di\", \"lcp-kp\" or \"lcp-lf\" (the continuation scales their controller's gains), else \"flow\"",
            ));
        }
        if self.method.controlled_start == ControlledStart::Zero {
            return Err(invalid(
                "method.controlled_start",
                "\"zero\" with method.equilibrium = \"branch\"",
                "\"free\" (the branch starts at phi0 by definition), or method.equilibrium = \"flow\"",
            ));
        }
        self.method.branch().validate()
    }

    /// A method section belongs to its method only, and its values must be valid.
    fn validate_method_sections(&self) -> Result<()> {
        let name = self.method.name;
        let given = [
            ("kp", Method::LcpKp, self.kp.is_some()),
            ("lf", Method::LcpLf, self.lf.is_some()),
            ("ebd", Method::LcpEbd, self.ebd.is_some()),
        ];
        for (section, owner, present) in given {
            if present && name != owner {
                return Err(invalid(
                    &format!("[{section}]"),
                    format!("given with method.name = \"{}\"", name.name()),
                    &format!(
                        "[{section}] only with method.name = \"{}\", which takes it; remove it for \"{}\"",
                        owner.name(),
                        name.name()
                    ),
                ));
            }
        }
        if let Some(kp) = &self.kp {
            let wd = kp.weight_decay;
            if !(0.0..1.0).contains(&wd) {
                return Err(invalid("kp.weight_decay", wd, "a fraction in [0, 1)"));
            }
        }
        if let Some(lf) = &self.lf {
            lf.validate()?;
        }
        if let Some(ebd) = &self.ebd {
            ebd.adam().validate()?;
        }
        Ok(())
    }
}
