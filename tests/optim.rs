//! Tests of `lcsim::optim` against independent scalar computations of the PyTorch
//! formulas (SGD, Adam, weight decay, clip_grad_norm_, CosineAnnealingLR).

use std::f64::consts::PI;

use lcsim::error::LcsimError;
use lcsim::optim::{
    clip_by_global_norm, Optimizer, OptimizerKind, OptimizerSettings, OptimizerState, Schedule,
};
use lcsim::system::params::Params;
use nalgebra::DMatrix;

fn scalar(value: f64) -> Params {
    Params::new(vec![("w".to_string(), DMatrix::from_element(1, 1, value))])
}

fn value(p: &Params) -> f64 {
    p.tensor(0)[(0, 0)]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn adam(lr: f64) -> OptimizerSettings {
    OptimizerSettings {
        kind: OptimizerKind::Adam,
        learning_rate: lr,
        ..OptimizerSettings::default()
    }
}

fn sgd(lr: f64, momentum: f64) -> OptimizerSettings {
    OptimizerSettings {
        kind: OptimizerKind::Sgd,
        learning_rate: lr,
        momentum,
        ..OptimizerSettings::default()
    }
}

/// Gradient of f(w) = a/2 (w - c)^2.
fn quad_grad(a: f64, c: f64, w: f64) -> f64 {
    a * (w - c)
}

/// Scalar reference for PyTorch Adam with L2 weight decay on f(w) = a/2 (w - c)^2.
#[allow(clippy::too_many_arguments)]
fn reference_adam(
    w0: f64,
    a: f64,
    c: f64,
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: f64,
    steps: usize,
) -> Vec<f64> {
    let (mut w, mut m, mut v) = (w0, 0.0, 0.0);
    let mut out = Vec::new();
    for t in 1..=steps {
        let g = quad_grad(a, c, w) + wd * w;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let m_hat = m / (1.0 - b1.powi(t as i32));
        let v_hat = v / (1.0 - b2.powi(t as i32));
        w -= lr * m_hat / (v_hat.sqrt() + eps);
        out.push(w);
    }
    out
}

#[test]
fn adam_matches_scalar_pytorch_formulas_for_three_steps() {
    let (a, c, w0, lr) = (2.0, 0.5, 3.0, 0.1);
    let settings = OptimizerSettings {
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-3,
        ..adam(lr)
    };
    let mut opt = Optimizer::new(settings).unwrap();
    let mut p = scalar(w0);
    let expected = reference_adam(w0, a, c, lr, 0.8, 0.99, 1e-3, 0.0, 3);
    for (k, want) in expected.iter().enumerate() {
        let g = scalar(quad_grad(a, c, value(&p)));
        let report = opt.step(&mut p, &g).unwrap();
        assert_eq!(report.learning_rate, lr);
        assert!(!report.clipped);
        assert!(
            close(value(&p), *want, 1e-14),
            "step {}: {} vs {}",
            k + 1,
            value(&p),
            want
        );
    }
    assert_eq!(opt.steps_taken(), 3);
    // Hand check of step 1: m_hat = g, v_hat = g^2, so w1 = w0 - lr * g / (|g| + eps).
    let g0 = quad_grad(a, c, w0);
    assert!(close(expected[0], w0 - lr * g0 / (g0.abs() + 1e-3), 1e-15));
}

#[test]
fn sgd_with_momentum_matches_pytorch() {
    // f(w) = w^2 / 2, w0 = 1, lr = 0.1, momentum 0.9, by hand:
    // t1: buf = 1, w = 0.9; t2: g = 0.9, buf = 1.8, w = 0.72;
    // t3: g = 0.72, buf = 2.34, w = 0.486.
    let by_hand = [0.9, 0.72, 0.486];
    let mut opt = Optimizer::new(sgd(0.1, 0.9)).unwrap();
    let mut p = scalar(1.0);
    // Scalar reference loop for a different quadratic as well.
    let (a, c) = (3.0, -0.25);
    let mut opt2 = Optimizer::new(sgd(0.05, 0.7)).unwrap();
    let mut p2 = scalar(2.0);
    let (mut w, mut buf) = (2.0, None::<f64>);
    for want in by_hand {
        let g = scalar(value(&p));
        opt.step(&mut p, &g).unwrap();
        assert!(close(value(&p), want, 1e-14), "{} vs {want}", value(&p));

        let g2 = scalar(quad_grad(a, c, value(&p2)));
        opt2.step(&mut p2, &g2).unwrap();
        let gr = quad_grad(a, c, w);
        let b = match buf {
            None => gr,
            Some(b) => 0.7 * b + gr,
        };
        buf = Some(b);
        w -= 0.05 * b;
        assert!(close(value(&p2), w, 1e-14), "{} vs {w}", value(&p2));
    }
    // Momentum makes a difference (plain SGD would give 0.9^3 = 0.729).
    assert!(!close(value(&p), 0.729, 1e-6));
    let st = opt.state();
    assert_eq!(st.step, 3);
    assert!(close(value(st.first_moment.as_ref().unwrap()), 2.34, 1e-14));
    assert!(st.second_moment.is_none());
}

#[test]
fn weight_decay_is_coupled_l2_for_sgd_and_adam() {
    // SGD, zero gradient: w1 = w0 - lr * wd * w0 = 2 - 0.5 * 0.1 * 2 = 1.9.
    let mut opt = Optimizer::new(OptimizerSettings {
        weight_decay: 0.1,
        ..sgd(0.5, 0.0)
    })
    .unwrap();
    let mut p = scalar(2.0);
    opt.step(&mut p, &scalar(0.0)).unwrap();
    assert!(close(value(&p), 1.9, 1e-15), "{}", value(&p));
    opt.step(&mut p, &scalar(0.0)).unwrap();
    assert!(close(value(&p), 1.9 * 0.95, 1e-15), "{}", value(&p));

    // Adam with L2 weight decay (torch.optim.Adam, not AdamW): compare with scalar loop.
    // The loss pulls w up (g = -0.2) but the decay term 0.5 * w outweighs it, so the
    // first step goes *down* by ~lr (AdamW or no decay would go up).
    let (a, c, w0, lr, wd) = (1.0, 1.2, 1.0, 0.05, 0.5);
    let mut opt = Optimizer::new(OptimizerSettings {
        weight_decay: wd,
        ..adam(lr)
    })
    .unwrap();
    let mut p = scalar(w0);
    let expected = reference_adam(w0, a, c, lr, 0.9, 0.999, 1e-8, wd, 4);
    for want in &expected {
        let g = scalar(quad_grad(a, c, value(&p)));
        opt.step(&mut p, &g).unwrap();
        assert!(close(value(&p), *want, 1e-14), "{} vs {want}", value(&p));
    }
    assert!(close(expected[0], w0 - lr, 1e-6), "{}", expected[0]);
    // ... and it differs from Adam without weight decay, which moves up.
    let no_wd = reference_adam(w0, a, c, lr, 0.9, 0.999, 1e-8, 0.0, 4);
    assert!(close(no_wd[0], w0 + lr, 1e-6), "{}", no_wd[0]);
}

fn two_tensors(w: &[f64], b: &[f64]) -> Params {
    Params::new(vec![
        ("W".to_string(), DMatrix::from_row_slice(1, w.len(), w)),
        ("b".to_string(), DMatrix::from_row_slice(b.len(), 1, b)),
    ])
}

#[test]
fn clipping_scales_to_max_norm_and_keeps_direction() {
    // Global norm over both tensors: sqrt(9 + 16 + 144) = 13.
    let original = two_tensors(&[3.0, 4.0], &[12.0]);
    let mut g = original.clone();
    let norm = clip_by_global_norm(&mut g, 1.3);
    assert!(close(norm, 13.0, 1e-15));
    let coef = 1.3 / (13.0 + 1e-6);
    let expected = two_tensors(&[3.0 * coef, 4.0 * coef], &[12.0 * coef]);
    for ((_, a), (_, b)) in g.iter().zip(expected.iter()) {
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(close(*x, *y, 1e-15), "{x} vs {y}");
        }
    }
    let new_norm = (g.tensor(0).iter().chain(g.tensor(1).iter()))
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    assert!((new_norm - 1.3).abs() < 1e-6, "{new_norm}");
    assert!(close(g.cosine(&original), 1.0, 1e-14));

    // Below the threshold: untouched.
    let mut h = original.clone();
    assert!(close(clip_by_global_norm(&mut h, 20.0), 13.0, 1e-15));
    assert_eq!(h, original);

    // Inside a step: plain SGD with lr 1 moves by exactly the clipped gradient.
    let mut opt = Optimizer::new(OptimizerSettings {
        clip_norm: Some(1.3),
        ..sgd(1.0, 0.0)
    })
    .unwrap();
    let mut p = two_tensors(&[0.0, 0.0], &[0.0]);
    let report = opt.step(&mut p, &original).unwrap();
    assert!(report.clipped);
    assert!(close(report.gradient_norm, 13.0, 1e-15));
    assert!(close(p.tensor(0)[(0, 1)], -4.0 * coef, 1e-15));
    assert!(close(p.tensor(1)[(0, 0)], -12.0 * coef, 1e-15));
    // Well below the threshold: not clipped. (At the threshold PyTorch's 1e-6 guard
    // still scales by max_norm / (norm + 1e-6) < 1.)
    let mut half = g.clone();
    half.scale(0.5);
    let report = opt.step(&mut p, &half).unwrap();
    assert!(!report.clipped);
    assert!(close(report.gradient_norm, 0.65, 1e-6));
}

#[test]
fn cosine_schedule_closed_form() {
    let (lr, t_max, mf) = (0.01, 100usize, 0.1);
    let s = Schedule::Cosine {
        total_steps: t_max,
        min_factor: mf,
    };
    let eta_min = mf * lr;
    assert!(close(s.learning_rate_at(lr, 0), 0.01, 1e-15));
    assert!(close(s.learning_rate_at(lr, 50), 0.0055, 1e-14));
    assert!(close(s.learning_rate_at(lr, 100), 0.001, 1e-14));
    assert!(close(s.learning_rate_at(lr, 150), 0.001, 1e-14));
    assert!(close(s.learning_rate_at(lr, 10_000), 0.001, 1e-14));
    let at25 = eta_min + (lr - eta_min) * (1.0 + (PI / 4.0).cos()) / 2.0;
    assert!(close(s.learning_rate_at(lr, 25), at25, 1e-14));
    assert_eq!(Schedule::Constant.learning_rate_at(lr, 12345), lr);

    // The optimizer uses lr_t with t = steps already taken.
    let short = Schedule::Cosine {
        total_steps: 4,
        min_factor: 0.1,
    };
    let mut opt = Optimizer::new(OptimizerSettings {
        schedule: short,
        ..sgd(1.0, 0.0)
    })
    .unwrap();
    let mut p = scalar(0.0);
    let mut prev = 0.0;
    for t in 0..6 {
        let want = 0.1 + 0.9 * (1.0 + (PI * (t.min(4) as f64) / 4.0).cos()) / 2.0;
        let r = opt.step(&mut p, &scalar(-1.0)).unwrap();
        assert!(close(r.learning_rate, want, 1e-14), "t={t}");
        assert!(close(value(&p) - prev, want, 1e-14), "t={t}");
        prev = value(&p);
    }
}

#[test]
fn non_finite_gradient_is_refused_and_nothing_changes() {
    for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut opt = Optimizer::new(OptimizerSettings {
                kind,
                momentum: 0.5,
                ..OptimizerSettings::default()
            })
            .unwrap();
            let mut p = two_tensors(&[1.0, 2.0], &[3.0]);
            // One good step first so that the moments exist.
            opt.step(&mut p, &two_tensors(&[0.1, 0.2], &[0.3])).unwrap();
            let before_p = p.clone();
            let before_state = opt.state();
            let err = opt
                .step(&mut p, &two_tensors(&[0.1, 0.2], &[bad]))
                .unwrap_err();
            match &err {
                LcsimError::NonFinite { field, .. } => assert!(field.contains('b'), "{field}"),
                other => panic!("unexpected error {other}"),
            }
            assert!(err.to_string().contains("gradient.b"), "{err}");
            assert_eq!(p, before_p);
            assert_eq!(opt.state(), before_state);
            assert_eq!(opt.steps_taken(), 1);
        }
    }
}

#[test]
fn adam_minimises_random_quadratic() {
    // Deterministic pseudo-random numbers (splitmix64), independent of the crate.
    let mut state = 0x1234_5678_9abc_def0_u64;
    let mut rand = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let n = 8; // W: 2x3 and b: 2x1 = 8 scalars
    let m = DMatrix::from_fn(n, n, |_, _| rand());
    let a = m.transpose() * &m + DMatrix::identity(n, n) * 0.5;
    let target: Vec<f64> = (0..n).map(|_| rand()).collect();
    let flatten = |p: &Params| -> Vec<f64> { (0..n).map(|k| p.flat_get(k)).collect() };
    let loss_grad = |p: &Params| -> (f64, Params) {
        let x = flatten(p);
        let d: Vec<f64> = x.iter().zip(&target).map(|(x, t)| x - t).collect();
        let d = nalgebra::DVector::from_vec(d);
        let ad = &a * &d;
        let mut g = p.zeros_like();
        for k in 0..n {
            g.flat_set(k, ad[k]);
        }
        (0.5 * d.dot(&ad), g)
    };
    let mut p = Params::new(vec![
        ("W".to_string(), DMatrix::from_row_slice(2, 3, &[0.0; 6])),
        ("b".to_string(), DMatrix::from_row_slice(2, 1, &[0.0; 2])),
    ]);
    let mut opt = Optimizer::new(adam(0.02)).unwrap();
    let (loss0, _) = loss_grad(&p);
    assert!(loss0 > 0.1);
    for _ in 0..500 {
        let (_, g) = loss_grad(&p);
        opt.step(&mut p, &g).unwrap();
    }
    let (loss, _) = loss_grad(&p);
    assert!(loss < loss0 / 100.0, "loss {loss0} -> {loss}");
}

#[test]
fn state_round_trip_resumes_identically() {
    for settings in [
        adam(0.01),
        sgd(0.05, 0.9),
        sgd(0.05, 0.0),
        OptimizerSettings {
            weight_decay: 0.01,
            clip_norm: Some(0.5),
            schedule: Schedule::Cosine {
                total_steps: 8,
                min_factor: 0.1,
            },
            ..adam(0.03)
        },
    ] {
        let grad = |p: &Params| p.map(|m| m.map(|x| 3.0 * x - 1.0));
        let mut a = Optimizer::new(settings.clone()).unwrap();
        let mut pa = two_tensors(&[1.0, -2.0], &[0.5]);
        for _ in 0..5 {
            let g = grad(&pa);
            a.step(&mut pa, &g).unwrap();
        }
        let mut b = Optimizer::from_state(settings.clone(), a.state()).unwrap();
        assert_eq!(b.steps_taken(), 5);
        let mut pb = pa.clone();
        let mut pc = pa.clone();
        let mut fresh = Optimizer::new(settings.clone()).unwrap();
        for _ in 0..5 {
            let g = grad(&pa);
            let ra = a.step(&mut pa, &g).unwrap();
            let g = grad(&pb);
            let rb = b.step(&mut pb, &g).unwrap();
            assert_eq!(ra, rb);
        }
        assert_eq!(pa, pb);
        // A fresh optimizer (lost state) diverges from the resumed one, except for
        // plain SGD with a constant rate, which has no state to lose.
        for _ in 0..5 {
            let g = grad(&pc);
            fresh.step(&mut pc, &g).unwrap();
        }
        let stateless = settings.kind == OptimizerKind::Sgd && settings.momentum == 0.0;
        assert_eq!(pc == pb, stateless);
    }
    // Inconsistent states are refused.
    let bad = OptimizerState {
        step: 3,
        first_moment: None,
        second_moment: None,
    };
    assert!(Optimizer::from_state(adam(0.01), bad.clone()).is_err());
    assert!(Optimizer::from_state(sgd(0.01, 0.9), bad.clone()).is_err());
    assert!(Optimizer::from_state(sgd(0.01, 0.0), bad).is_ok());
}

#[test]
fn settings_defaults_validation_and_serde() {
    let d = OptimizerSettings::default();
    assert_eq!(d.kind, OptimizerKind::Adam);
    assert_eq!(
        (d.learning_rate, d.beta1, d.beta2, d.eps),
        (1e-3, 0.9, 0.999, 1e-8)
    );
    assert_eq!((d.weight_decay, d.momentum, d.clip_norm), (0.0, 0.0, None));
    assert_eq!(d.schedule, Schedule::Constant);
    d.validate().unwrap();

    let cases: Vec<(OptimizerSettings, &str)> = vec![
        (
            OptimizerSettings {
                learning_rate: 0.0,
                ..d.clone()
            },
            "training.learning_rate",
        ),
        (
            OptimizerSettings {
                beta1: 1.0,
                ..d.clone()
            },
            "training.beta1",
        ),
        (
            OptimizerSettings {
                beta2: -0.1,
                ..d.clone()
            },
            "training.beta2",
        ),
        (
            OptimizerSettings {
                eps: 0.0,
                ..d.clone()
            },
            "training.eps",
        ),
        (
            OptimizerSettings {
                weight_decay: -1.0,
                ..d.clone()
            },
            "training.weight_decay",
        ),
        (
            OptimizerSettings {
                momentum: 1.0,
                ..d.clone()
            },
            "training.momentum",
        ),
        (
            OptimizerSettings {
                clip_norm: Some(0.0),
                ..d.clone()
            },
            "training.clip_norm",
        ),
        (
            OptimizerSettings {
                schedule: Schedule::Cosine {
                    total_steps: 0,
                    min_factor: 0.1,
                },
                ..d.clone()
            },
            "training.schedule.total_steps",
        ),
        (
            OptimizerSettings {
                schedule: Schedule::Cosine {
                    total_steps: 10,
                    min_factor: 1.5,
                },
                ..d.clone()
            },
            "training.schedule.min_factor",
        ),
    ];
    for (s, field) in cases {
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{err} should name {field}");
        assert!(Optimizer::new(s).is_err());
    }

    let parsed: OptimizerSettings = serde_json::from_str(
        r#"{"kind": "sgd", "learning_rate": 0.5, "momentum": 0.9,
            "schedule": {"kind": "cosine", "total_steps": 100, "min_factor": 0.1}}"#,
    )
    .unwrap();
    assert_eq!(parsed.kind, OptimizerKind::Sgd);
    assert_eq!(parsed.learning_rate, 0.5);
    assert_eq!(parsed.beta2, 0.999);
    assert_eq!(
        parsed.schedule,
        Schedule::Cosine {
            total_steps: 100,
            min_factor: 0.1
        }
    );
    let back: OptimizerSettings =
        serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(back, parsed);
    assert!(serde_json::from_str::<OptimizerSettings>(r#"{"lr": 0.1}"#).is_err());
    assert!(serde_json::from_str::<OptimizerSettings>(r#"{"kind": "adamw"}"#).is_err());
}

#[test]
fn adam_with_clipping_and_decay_on_several_tensors_matches_scalar_formulas() {
    // Entrywise scalar Adam (clip by the global norm, coupled L2 decay) on two tensors whose
    // sizes (5 x 7, 13 x 1) leave remainders after any vector width; every step clips.
    let (lr, wd, clip) = (0.01, 0.05, 0.5);
    let (b1, b2, eps) = (0.9, 0.999, 1e-8);
    let settings = OptimizerSettings {
        weight_decay: wd,
        clip_norm: Some(clip),
        ..adam(lr)
    };
    let mut opt = Optimizer::new(settings).unwrap();
    let entry = |k: usize| ((k * 37 % 23) as f64 - 11.0) / 7.0;
    let mut p = Params::new(vec![
        (
            "W".to_string(),
            DMatrix::from_fn(5, 7, |i, j| entry(i + 5 * j)),
        ),
        (
            "b".to_string(),
            DMatrix::from_fn(13, 1, |i, _| entry(40 + i)),
        ),
    ]);
    let (mut w, mut m, mut v): (Vec<f64>, Vec<f64>, Vec<f64>) = (
        p.iter().flat_map(|(_, t)| t.iter().copied()).collect(),
        vec![0.0; 48],
        vec![0.0; 48],
    );
    for t in 1..=4 {
        // The gradient of sum_k (k + 1)/2 (w_k - 0.3)^2 at the current parameters.
        let mut g = p.clone();
        let mut flat_g = Vec::new();
        let mut k = 0;
        for tensor in g.tensors_mut() {
            for x in tensor.iter_mut() {
                *x = (k + 1) as f64 * (w[k] - 0.3);
                flat_g.push(*x);
                k += 1;
            }
        }
        let norm = flat_g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let coef = clip / (norm + 1e-6);
        assert!(coef < 1.0, "step {t} should clip");
        let report = opt.step(&mut p, &g).unwrap();
        assert!(report.clipped);
        for k in 0..48 {
            let gk = flat_g[k] * coef + wd * w[k];
            m[k] = b1 * m[k] + (1.0 - b1) * gk;
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
            let m_hat = m[k] / (1.0 - b1.powi(t));
            let v_hat = v[k] / (1.0 - b2.powi(t));
            w[k] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        let got: Vec<f64> = p.iter().flat_map(|(_, t)| t.iter().copied()).collect();
        for k in 0..48 {
            assert!(
                close(got[k], w[k], 1e-13),
                "step {t}, entry {k}: {} vs {}",
                got[k],
                w[k]
            );
        }
    }
    // After these steps (moments present), a step whose second moment overflows (decay
    // 1e199 on theta ~ 1) is refused and changes nothing.
    let before = (p.clone(), opt.state());
    let mut settings = opt.settings().clone();
    settings.weight_decay = 1e199;
    let mut decaying = Optimizer::from_state(settings, opt.state()).unwrap();
    let zero = p.map(|t| t.map(|_| 0.0));
    let err = decaying.step(&mut p, &zero).unwrap_err();
    assert!(
        matches!(&err, LcsimError::NonFiniteUpdate { what, .. } if what == "second moment"),
        "{err}"
    );
    assert_eq!(p, before.0);
    assert_eq!(decaying.state(), before.1);
    // ... and the optimizer steps normally afterwards.
    opt.step(&mut p, &zero).unwrap();
    assert_eq!(opt.steps_taken(), 5);
}
