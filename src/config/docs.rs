//! The documented default config that `lcsim config` prints: every key with its meaning,
//! units and allowed values.

use super::Config;

impl Config {
    /// The default as TOML text, every key preceded by a comment with its meaning,
    /// units and allowed values.
    pub fn default_toml() -> String {
        let plain =
            toml::to_string_pretty(&Config::default()).expect("the default config serialises");
        let mut out = String::from("# lcsim run config: every key, its meaning and default.\n# Override any key on the command line: --set section.key=value\n");
        let mut section = String::new();
        let mut document = |text: &str, comment: &str, out: &mut String| {
            for line in text.lines() {
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = name.to_string();
                } else if let Some((key, _)) = line.split_once(" = ") {
                    let full = format!("{section}.{key}");
                    if let Some((_, doc)) = KEY_DOCS.iter().find(|(k, _)| *k == full) {
                        out.push_str(&format!("# {doc}\n"));
                    }
                }
                out.push_str(comment);
                out.push_str(line);
                out.push('\n');
            }
        };
        document(&plain, "", &mut out);
        out.push_str(
            "\n# The sections below belong to one method each; give one only with its method.\n",
        );
        for (method, name) in [("lcp-kp", "kp"), ("lcp-lf", "lf"), ("lcp-ebd", "ebd")] {
            let mut one = toml::Table::new();
            one.insert(name.into(), Config::schema_table()[name].clone());
            let text = toml::to_string_pretty(&one).expect("a section serialises");
            out.push_str(&format!("\n# method.name = \"{method}\" only:\n"));
            document(&text, "# ", &mut out);
        }
        let mut one = toml::Table::new();
        one.insert("meta".into(), Config::schema_table()["meta"].clone());
        let text = toml::to_string_pretty(&one).expect("a section serialises");
        out.push_str("\n# model.kind = \"meta\" only:\n");
        document(&text, "# ", &mut out);
        out
    }
}

/// Meaning, units and allowed values of every key (printed by `lcsim config`).
pub const KEY_DOCS: &[(&str, &str)] = &[
    ("model.kind", "\"rnn\" (dense recurrent W), \"ff\" (layered; W feeds layer k into k+1 only) or \"meta\" (meta-learning, spec 7.1: the inner fine-tuning of a learner MLP on a task's support set, [meta]: 1-hidden-1 with squared error for data.source = \"sinusoid\", pixels-hidden-ways with cross-entropy for \"fewshot-mnist\" / \"fewshot-digits\")"),
    ("model.hidden", "hidden units: [n_h] for rnn, one size per layer for ff (reference: [256] / [256, 256])"),
    ("model.activation", "rate nonlinearity s: \"tanh\", \"relu\" or \"sigmoid\""),
    ("model.seed", "seed of the initial weights (PyTorch-style uniform +-1/sqrt(fan_in))"),
    ("dynamics.tau_v", "time constant of the network units v, y (time units; > 0)"),
    ("dynamics.tau_u", "time constant of the integral controller u_i (> 0)"),
    ("dynamics.tau_e", "time constant of the hidden control e (> 0)"),
    ("controller.alpha", "leak of the integral controller (> 0; small = strong control, H -> least control; reference 0.1, default 1: measured best on digits, experiments/README.md)"),
    ("controller.k_i", "integral gain (>= 0)"),
    ("controller.k_p", "proportional gain (>= 0; reference 0)"),
    ("method.name", "least control: \"lcp-di\" (dynamic inversion), \"lcp-kp\" (learned Kolen-Pollack feedback, [kp]), \"lcp-lf\" (linear feedback e = Q u, [lf]), \"lcp-ebd\" (energy descent, [ebd]); gradients: \"rbp\" (recurrent backprop, rnn; meta: the implicit gradient by the adjoint solve) or \"bp\" (backprop, ff); meta only: \"imaml\" (implicit MAML, conjugate gradient on Hessian-vector products) or \"fomaml\" (first-order MAML: grad L_out(phi*)); meta takes lcp-di, lcp-ebd, rbp, imaml, fomaml"),
    ("method.loss", "\"cross-entropy\" (softmax of y vs label) or \"squared-error\""),
    ("method.loss_scale", "\"batch-mean\" (controller driven by grad L / B, updates summed; reference) or \"per-sample\" (grad L, updates averaged)"),
    ("method.on_unconverged", "samples whose solve hit max_time/max_steps: \"use\" the state reached (reference), \"skip\" them, or \"stop\"; diverged samples are always skipped"),
    ("method.controlled_start", "start of the controlled relaxation: \"free\" (the free equilibrium, controller at rest) or \"zero\" (all zero, as the reference)"),
    ("method.equilibrium", "which controlled equilibrium (spec 2.2): \"flow\" (where the coupled ODE settles when the controller switches on at controlled_start: what a physical circuit does; accelerated solvers certify it, solver.certify_flow) or \"branch\" (the equilibrium continuously connected to phi0 as the control strength lambda in [0, 1] scales k_i and k_p from 0: beta -> lambda beta; followed by secant predictor and Newton-Krylov corrector; a fold is reported per sample and handled like an unconverged solve by on_unconverged; lcp-di, lcp-kp, lcp-lf with controlled_start = \"free\")"),
    ("method.branch_initial_step", "equilibrium = \"branch\": first step in lambda, in (0, 1]; it doubles after a corrector of <= 3 Newton steps and halves on a rejected one"),
    ("method.branch_min_step", "equilibrium = \"branch\": smallest step in (0, branch_initial_step]; a corrector rejected at it is a fold"),
    ("method.branch_corrector_iterations", "equilibrium = \"branch\": Newton-Krylov steps per corrector (>= 1); solver.atol/rtol, krylov_dim, newton_forcing and the stability check apply"),
    ("method.branch_max_correction", "equilibrium = \"branch\": a corrector is rejected when it moves an entry by more than this times (1 + |predicted entry|) (> 0): it jumped off the branch"),
    ("solver.method", "\"anderson\" or \"newton-krylov\" (batched equilibrium solvers with stability check and fallback), \"tsit45\", \"bdf\", \"esdirk34\", \"tr-bdf2\" (diffsol, adaptive) or \"euler\" (fixed step dt)"),
    ("solver.precision", "floating point of the Euler iterations: \"f64\" (default) or \"f32\" (about twice as fast; solver.method = \"euler\", model.kind rnn or ff, method lcp-di (flow) or rbp; solver.atol >= 1e-6; solver.divergence_bound <= 1e15; the free, LCP-DI controlled and RBP adjoint relaxations run in f32 (also the free flows of the training diagnostics, which use this solver), the updates, optimizer, lcsim check and simulate in f64)"),
    ("solver.dt", "forward-Euler step (time units; dt = 1 with all tau = 1 is the reference iteration)"),
    ("solver.atol", "steady state when every |tau dz/dt|_i <= atol + rtol |z_i| (> 0; stop_norm = \"l2\": ||tau dz/dt||_2 <= atol + rtol ||z||_2)"),
    ("solver.rtol", "relative part of the steady-state test (>= 0)"),
    ("solver.stop_norm", "the steady-state test per sample: \"entrywise\" (every component, default) or \"l2\" (the whole state's Euclidean norms; with all tau = 1 and euler dt = 1 it is the reference's relative L2 change per step, spec 4: rtol 1e-6 for LCP, 1e-4 for RBP, a tiny atol)"),
    ("solver.max_time", "give up at this time (time units)"),
    ("solver.max_steps", "give up after this many steps"),
    ("solver.ode_rtol", "local relative error tolerance of the adaptive integrators"),
    ("solver.ode_atol", "local absolute error tolerance of the adaptive integrators (keep well below atol)"),
    ("solver.initial_step", "first step of the adaptive integrators (0 = diffsol's heuristic)"),
    ("solver.divergence_bound", "a state entry beyond this magnitude counts as diverged"),
    ("solver.max_iterations", "anderson / newton-krylov: iteration cap before the fallback (>= 1)"),
    ("solver.anderson_step", "anderson: step h of the Euler map z + h r(z) / tau that it accelerates (> 0)"),
    ("solver.anderson_memory", "anderson: previous iterates mixed (>= 1)"),
    ("solver.anderson_damping", "anderson: mixing factor in (0, 1]"),
    ("solver.anderson_regularization", "anderson: relative Tikhonov regularisation of its least squares (>= 0)"),
    ("solver.krylov_dim", "newton-krylov: GMRES dimension per Newton step (>= 1)"),
    ("solver.newton_forcing", "newton-krylov: GMRES stops at |J d + r| <= forcing |r|, in (0, 1)"),
    ("solver.stability_check", "anderson / newton-krylov: reject an equilibrium whose Jacobian has a Ritz value with positive real part (the flow would leave it)"),
    ("solver.stability_dim", "Arnoldi steps (Jacobian products per sample) of the stability check (>= 1)"),
    ("solver.certify_flow", "anderson / newton-krylov: certify that an equilibrium found is where the flow from the same start ends (spec 2.2): the flow is integrated by the fallback integrator to certify_tolerance, Newton-Krylov polishes the point reached, and that equilibrium must equal the candidate within certify_tolerance (relative per entry); a rejected candidate goes to the fallback (counted as uncertified); skipped for RBP's adjoint (one equilibrium) and LCP-EBD's descent (a minimiser, not a flow's end)"),
    ("solver.certify_tolerance", "loose steady-state tolerance |r_i| <= tol (1 + |z_i|) of the certifying flow integration, and the largest distance |z_i - z*_i| / (1 + |z*_i|) at which its equilibrium counts as the candidate z*, in (0, 1)"),
    ("solver.fallback", "anderson / newton-krylov: integrator for the samples they do not settle (\"tsit45\", \"bdf\", \"esdirk34\", \"tr-bdf2\", \"euler\" or \"none\")"),
    ("solver.chunk", "anderson / newton-krylov / euler, and tsit45 trajectories (simulate): samples iterated together (>= 1); results do not depend on the thread count"),
    ("training.optimizer", "\"adam\" (PyTorch Adam, L2 weight decay) or \"sgd\""),
    ("training.learning_rate", "base learning rate (> 0; reference 0.001 on MNIST; default 0.03, measured on digits)"),
    ("training.weight_decay", "L2 weight decay added to the gradient (>= 0)"),
    ("training.momentum", "SGD momentum in [0, 1)"),
    ("training.clip_norm", "clip the global update norm to this (0 = off; reference rnn: 10)"),
    ("training.spectral_bound", "keep the free equilibrium stable: after every optimizer step rescale the recurrent W to ||W||_2 <= this (power iteration); < 1 makes the rate net a contraction (one stable free equilibrium); a per-matrix projection, not a synapse-local rule (0 = off, >= 0)"),
    ("training.schedule", "\"cosine\" (decay to min_lr_factor * learning_rate over all steps; reference) or \"constant\""),
    ("training.min_lr_factor", "final learning rate of the cosine schedule, as a fraction of learning_rate"),
    ("training.epochs", "passes over the training split (>= 1)"),
    ("training.batch_size", "samples per mini-batch (>= 1; reference 64)"),
    ("training.eval_every", "evaluate on the test split every this many epochs, and after the last"),
    ("training.seed", "seed of the mini-batch order"),
    ("training.threads", "worker threads for the per-sample solves (0 = all cores); results do not depend on it"),
    ("training.on_non_finite", "an optimizer step whose gradient, new parameters or moments are not finite: \"stop\" (default; an error naming the tensor and the batch, nothing saved) or \"skip\" (that batch leaves the state unchanged, counted in metrics.csv's skipped_samples)"),
    ("training.diagnostics_samples", "basin and stability diagnostics at the end of every epoch (metrics.csv, progress line, stability figure) on this many samples: the first ones of the test split (of the training split if there is no test split); 0 = off"),
    ("data.source", "\"digits\" (scikit-learn 8x8 digits, embedded), \"mnist\" (IDX files in mnist_dir), \"cifar10\" (CIFAR-10 binary batches in cifar_dir; 3 x 32 x 32 images), \"xor\", \"two-moons\", \"sinusoid\" (few-shot regression tasks of [meta], with model.kind = \"meta\"), \"fewshot-mnist\" (N-way K-shot classification tasks of [meta] from the MNIST IDX files in mnist_dir, train and test files pooled; classes = digit x rotation, meta.test_digits held out) or \"fewshot-digits\" (the same from the embedded 8x8 digits)"),
    ("meta.lambda", "pull of the inner problem towards theta, f = -grad L_in(phi) - lambda (phi - theta) (> 0)"),
    ("meta.support", "support points K per task: the inner loss L_in (>= 1); per class (K-shot) for classification"),
    ("meta.query", "query points per task: the outer loss L_out the controller reads (>= 1); per class for classification"),
    ("meta.ways", "classification: classes N per task (N-way, >= 2, at most the classes of the meta-training and of the meta-test pool); labels are assigned to a task's classes in random order"),
    ("meta.rotations", "classification: each digit under this many rotations by 90 degrees is a class (1-4; 4: 0, 90, 180, 270 degrees, as Omniglot is augmented)"),
    ("meta.test_digits", "classification: digits whose classes (every rotation) form the meta-test pool; the other digits' classes are meta-trained on (disjoint pools; default [6, 7, 8, 9])"),
    ("meta.image_pool", "classification: average-pool images over blocks of this side (>= 1, dividing the image side: 28 for fewshot-mnist, 8 for fewshot-digits); the learner sees (side/pool)^2 pixels"),
    ("meta.amplitude", "[low, high] of the sinusoids' amplitude A, uniform (MAML: [0.1, 5])"),
    ("meta.phase", "[low, high] of the sinusoids' phase p, uniform (MAML: [0, pi])"),
    ("meta.x_range", "[low, high] of the input points x, uniform (MAML: [-5, 5])"),
    ("meta.train_tasks", "tasks in the meta-training pool drawn from data.seed (an epoch visits each once)"),
    ("meta.test_tasks", "new tasks of the meta-test, drawn from another seed (>= 1)"),
    ("meta.cg_tolerance", "imaml: conjugate gradient stops at relative residual |A w - g| <= tol |g| (> 0)"),
    ("meta.cg_max_iterations", "imaml: conjugate-gradient iterations at most (>= 1; a task that needs more counts as unconverged)"),
    ("data.mnist_dir", "directory with train-images-idx3-ubyte(.gz) etc."),
    ("data.cifar_dir", "directory with CIFAR-10's binary batches data_batch_1.bin ... data_batch_5.bin (training, in that order) and test_batch.bin (from cifar-10-binary.tar.gz; nothing is downloaded); each file a whole number of 3073-byte records (1 label byte 0..=9, then the red, green, blue 32x32 planes, row-major), pixels scaled to [0, 1]"),
    ("data.test_fraction", "test share of digits and synthetic data, in (0, 1)"),
    ("data.train_limit", "use at most this many training samples (0 = all; mnist and cifar10 keep the first ones of the files)"),
    ("data.test_limit", "use at most this many test samples (0 = all; mnist and cifar10 keep the first ones of the files)"),
    ("data.synthetic_samples", "samples of a synthetic task"),
    ("data.seed", "seed of the train/test split and synthetic data"),
    ("output.dir", "parent directory of run folders"),
    ("output.name", "run folder name (empty: method-model-data-seedN)"),
    ("output.figures", "draw figures at the end of the run"),
    ("output.figure_format", "\"png\" or \"svg\""),
    ("kp.weight_decay", "lcp-kp: W, b, D, d (conv: the layers after the first and the readout; deq: K1, K2, D, d) and the feedback weights B, G shrink by (1 - weight_decay) before every batch, in [0, 1) (reference MNIST: 1e-6)"),
    ("lf.sigma", "lcp-lf: amplitude of the Ornstein-Uhlenbeck noise added to the hidden units' feedback in the noisy phase (> 0; reference 0.01)"),
    ("lf.tau_q", "lcp-lf: time constant of Q; Q moves by dt / tau_q per batch (> 0; reference 1e5)"),
    ("lf.weight_decay", "lcp-lf: decay of Q inside its update (>= 0; reference 0.01)"),
    ("lf.tau_eps", "lcp-lf: time constant of the noise (> 0); its correlation time is timescale_factor * tau_eps"),
    ("lf.timescale_factor", "lcp-lf: T >= 1; in the noisy phase the output units and the controller run T^2 slower than v (reference 5)"),
    ("lf.steps", "lcp-lf: Euler-Maruyama steps of the noisy phase per batch (>= 1; reference 800)"),
    ("lf.dt", "lcp-lf: step of the noisy phase (time units, > 0; reference 1)"),
    ("ebd.descent", "lcp-ebd: \"flow\" (gradient flow on E_alpha solved to steady state by [solver]; use newton-krylov or anderson: the flow is stiff and Euler with dt = 1 diverges) or \"adam\" (Adam on the state, as the reference)"),
    ("ebd.learning_rate", "lcp-ebd, descent = \"adam\": Adam's step on the state (> 0; reference: 0.001 rnn, 0.01 ff)"),
    ("ebd.steps", "lcp-ebd, descent = \"adam\": Adam steps (>= 1; reference: 200 rnn, 800 ff)"),
];
