//! The one TOML schema of a run (serde; unknown keys rejected), `--set key=value`
//! overrides, and validation into library settings. `lcsim config` prints the default.
//! One file per concern: each section's types (network, method, solver, training, data,
//! output), reading a file with its overrides (load, overrides), validation, and the
//! documented default (docs).

use crate::control::{ControllerSettings, Objective};
use crate::solve::SolverSettings;
use crate::system::rate::Topology;
use serde::{Deserialize, Serialize};

mod conv;
mod data;
mod docs;
mod fingerprint;
mod load;
mod meta;
mod method;
mod network;
mod output;
mod overrides;
mod resources;
mod solver;
mod training;
mod validate;

pub use conv::{ConvConfig, DeqConfig};
pub use data::DataConfig;
pub use docs::KEY_DOCS;
pub use fingerprint::{changed_keys, fingerprint, hex, sha256_hex, value_text};
pub use meta::MetaConfig;
pub use method::{
    ControlledStart, EbdConfig, EquilibriumDefinition, KpConfig, LfConfig, Method, MethodConfig,
    OnUnconverged,
};
pub use network::{ControllerConfig, DynamicsConfig, ModelConfig, ModelKind};
pub use output::OutputConfig;
pub use overrides::parse_value;
pub use resources::{check_memory, MEMORY_CAP_BYTES};
pub use training::{OnNonFinite, ScheduleKind, TrainingConfig};

/// A whole run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelConfig,
    pub dynamics: DynamicsConfig,
    pub controller: ControllerConfig,
    pub method: MethodConfig,
    pub solver: SolverSettings,
    pub training: TrainingConfig,
    pub data: DataConfig,
    pub output: OutputConfig,
    /// LCP-KP's settings (only with `method.name = "lcp-kp"`; filled with the defaults there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kp: Option<KpConfig>,
    /// LCP-LF's settings (only with `method.name = "lcp-lf"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lf: Option<LfConfig>,
    /// LCP-EBD's settings (only with `method.name = "lcp-ebd"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebd: Option<EbdConfig>,
    /// Meta-learning's settings (only with `model.kind = "meta"`; filled with the defaults
    /// there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaConfig>,
    /// The layered conv net's layers (only with `model.kind = "conv"`; filled with the
    /// defaults there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conv: Option<ConvConfig>,
    /// The conv DEQ's sizes (only with `model.kind = "deq"`; filled with the defaults there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deq: Option<DeqConfig>,
}

impl Config {
    /// The config with the defaults of its method's own section filled in (what a run
    /// records as resolved).
    pub fn resolved(mut self) -> Config {
        match self.method.name {
            Method::LcpKp => self.kp = self.kp.or_else(|| Some(KpConfig::default())),
            Method::LcpLf => self.lf = self.lf.or_else(|| Some(LfConfig::default())),
            Method::LcpEbd => self.ebd = self.ebd.or_else(|| Some(EbdConfig::default())),
            _ => {}
        }
        match self.model.kind {
            ModelKind::Meta => self.meta = self.meta.or_else(|| Some(MetaConfig::default())),
            ModelKind::Conv => self.conv = self.conv.or_else(|| Some(ConvConfig::default())),
            ModelKind::Deq => self.deq = self.deq.or_else(|| Some(DeqConfig::default())),
            _ => {}
        }
        self
    }

    /// Every key a config may hold: the default with all method sections present.
    pub fn schema_table() -> toml::Table {
        let all = Config {
            kp: Some(KpConfig::default()),
            lf: Some(LfConfig::default()),
            ebd: Some(EbdConfig::default()),
            meta: Some(MetaConfig::default()),
            conv: Some(ConvConfig::default()),
            deq: Some(DeqConfig::default()),
            ..Config::default()
        };
        toml::Table::try_from(all).expect("the config schema serialises")
    }

    /// This config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config serialises")
    }

    /// The topology of `[model]` (a rate network's; `meta` has the learner's layers; conv
    /// and deq have none: theirs is `model.hidden` as layers, never read).
    pub fn topology(&self) -> Topology {
        match self.model.kind {
            ModelKind::Rnn => Topology::Recurrent {
                hidden: self.model.hidden[0],
            },
            ModelKind::Ff | ModelKind::Meta | ModelKind::Conv | ModelKind::Deq => {
                Topology::Layered {
                    layers: self.model.hidden.clone(),
                }
            }
        }
    }

    /// The system in words, for banners: the rate network's topology, the conv net's
    /// layers, the DEQ's settings or the learner MLP, with the parameter count.
    pub fn system_text(&self) -> String {
        match (self.model.kind, self.learner()) {
            (ModelKind::Meta, Ok(l)) => format!(
                "meta-learning of the learner MLP {:?} ({} parameters), lambda {}",
                l.sizes(),
                l.num_params(),
                self.meta_settings().lambda
            ),
            (ModelKind::Conv, _) => format!(
                "layered conv net {} ({} parameters)",
                serde_json::to_string(&self.conv_settings().layers).unwrap_or_default(),
                self.conv_system_sizes().map_or(0, |s| s.0)
            ),
            (ModelKind::Deq, _) => format!(
                "conv DEQ {} ({} parameters)",
                serde_json::to_string(&self.deq_settings()).unwrap_or_default(),
                self.conv_system_sizes().map_or(0, |s| s.0)
            ),
            _ => format!("{:?}", self.topology()),
        }
    }

    /// `[conv]` as resolved (its defaults when the section is absent).
    pub fn conv_settings(&self) -> ConvConfig {
        self.conv.clone().unwrap_or_default()
    }

    /// `[deq]` as resolved (its defaults when the section is absent).
    pub fn deq_settings(&self) -> DeqConfig {
        self.deq.clone().unwrap_or_default()
    }

    /// `[meta]` as resolved (its defaults when the section is absent).
    pub fn meta_settings(&self) -> MetaConfig {
        self.meta.clone().unwrap_or_default()
    }

    /// Support points of a task: `meta.support` (K), times `meta.ways` for classification
    /// (K-shot of each of N classes).
    pub fn support_points(&self) -> usize {
        let meta = self.meta_settings();
        match self.data.source.image_side() {
            Some(_) => meta.ways * meta.support,
            None => meta.support,
        }
    }

    /// The learner MLP of `model.kind = "meta"`: `1 - model.hidden - 1` with squared error
    /// for the sinusoid tasks (one input x, one output y), `(side / meta.image_pool)^2 -
    /// model.hidden - meta.ways` with cross-entropy for few-shot classification.
    pub fn learner(&self) -> crate::error::Result<crate::system::learner::Mlp> {
        use crate::system::learner::{LearnerLoss, Mlp};
        let meta = self.meta_settings();
        let (inputs, outputs, loss) = match self.data.source.image_side() {
            Some(side) => {
                if meta.image_pool == 0 || side % meta.image_pool != 0 {
                    return Err(crate::error::invalid(
                        "meta.image_pool",
                        meta.image_pool,
                        &format!(
                            "a divisor of the image side {side} of data.source = \"{}\"",
                            self.data.source.name()
                        ),
                    ));
                }
                let pooled = side / meta.image_pool;
                (pooled * pooled, meta.ways, LearnerLoss::CrossEntropy)
            }
            None => (1, 1, LearnerLoss::SquaredError),
        };
        let mut sizes = vec![inputs];
        sizes.extend(&self.model.hidden);
        sizes.push(outputs);
        Ok(Mlp::new(sizes)?.with_loss(loss))
    }

    /// The objective of a batch of `batch_size` samples (`method.loss`, `method.loss_scale`).
    pub fn objective(&self, batch_size: usize) -> Objective {
        self.objective_scaled(self.method.loss_scale, batch_size)
    }

    /// The objective with the loss scale `scale`: `method.loss`, or for `model.kind =
    /// "meta"` the query loss of each task (`method.loss` does not apply).
    pub fn objective_scaled(
        &self,
        scale: crate::control::LossScale,
        batch_size: usize,
    ) -> Objective {
        match (self.model.kind, self.learner()) {
            (ModelKind::Meta, Ok(learner)) => {
                let loss = std::sync::Arc::new(crate::system::meta::QueryLoss { learner });
                Objective::of(loss, scale, batch_size)
            }
            _ => Objective::new(self.method.loss, scale, batch_size),
        }
    }

    /// The controller of `[dynamics]` and `[controller]`.
    pub fn controller_settings(&self) -> ControllerSettings {
        ControllerSettings {
            tau_u: self.dynamics.tau_u,
            tau_e: self.dynamics.tau_e,
            alpha: self.controller.alpha,
            k_i: self.controller.k_i,
            k_p: self.controller.k_p,
        }
    }

    /// How the controlled equilibrium of least-control `method` under `controller` is sought
    /// (`method.controlled_start`, `method.equilibrium` and its `branch_*` keys, `[ebd]`,
    /// `[solver]`).
    pub fn variant(
        &self,
        method: Method,
        controller: ControllerSettings,
    ) -> crate::learn::variant::VariantSettings<'_> {
        crate::learn::variant::VariantSettings {
            method,
            controller,
            start: self.method.controlled_start,
            equilibrium: self.method.equilibrium,
            branch: self.method.branch(),
            ebd: self.ebd.clone().unwrap_or_default(),
            solver: &self.solver,
        }
    }

    /// The run folder's name: `output.name`, or method-model-data-seed.
    pub fn run_name(&self) -> String {
        if !self.output.name.is_empty() {
            return self.output.name.clone();
        }
        format!(
            "{}-{}-{}-seed{}",
            self.method.name.name(),
            self.run_kind(),
            self.data.source.name(),
            self.model.seed
        )
    }
}
