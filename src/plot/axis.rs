//! Axes: data ranges, padding, tick positions and tick labels (linear, logarithmic,
//! epochs, time), and the plotters coordinate that draws them.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
/// One axis in plot coordinates (log10 of the data for logarithmic axes), with its ticks
/// and their labels.
#[derive(Clone, Debug)]
pub(super) struct Axis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
    pub(super) labels: Vec<String>,
    /// Unlabelled minor grid lines (2..9 × 10^k on logarithmic axes).
    pub(super) minor: Vec<f64>,
}

impl Axis {
    pub(super) fn coord(&self) -> AxisCoord {
        AxisCoord {
            lo: self.lo,
            hi: self.hi,
            ticks: self.ticks.clone(),
            minor: self.minor.clone(),
        }
    }

    pub(super) fn label(&self, v: f64) -> String {
        match self.ticks.iter().position(|t| *t == v) {
            Some(i) => self.labels[i].clone(),
            None => format!("{v}"),
        }
    }

    fn with_linear_ticks(lo: f64, hi: f64, ticks: Vec<f64>, step: f64) -> Axis {
        let labels = linear_labels(&ticks, step);
        Axis {
            lo,
            hi,
            ticks,
            labels,
            minor: vec![],
        }
    }

    /// Linear axis over the finite values, padded by 5 % (constant data: by 10 % of the
    /// value, or 0.5 around 0) but not far below 0 for non-negative data, with about
    /// `target` ticks.
    pub(super) fn linear(values: &[f64], target: usize) -> Axis {
        let data = finite_range(values).unwrap_or((0.0, 1.0));
        let (mut lo, hi) = padded(data, 0.05);
        if data.0 >= 0.0 && lo < 0.0 {
            // Non-negative data (losses, magnitudes, counts): the axis starts just below 0.
            lo = -0.03 * hi;
        }
        let step = nice_step(hi - lo, target);
        Axis::with_linear_ticks(lo, hi, ticks_in(lo, hi, step), step)
    }

    /// Linear axis over the finite values without padding (time axes start and end with
    /// the data).
    pub(super) fn time(values: &[f64]) -> Axis {
        let (lo, hi) = match finite_range(values) {
            Some((lo, hi)) if hi - lo > 1e-12 * lo.abs().max(hi.abs()) => (lo, hi),
            Some(r) => padded(r, 0.0),
            None => (0.0, 1.0),
        };
        let step = nice_step(hi - lo, 8);
        Axis::with_linear_ticks(lo, hi, ticks_in(lo, hi, step), step)
    }

    /// Epoch axis: integer ticks within the epochs present, padded by 3 %.
    pub(super) fn epochs(epochs: &[f64]) -> Axis {
        let (a, b) = finite_range(epochs).unwrap_or((1.0, 1.0));
        let (lo, hi) = if b > a {
            let pad = 0.03 * (b - a);
            (a - pad, b + pad)
        } else {
            (a - 1.0, a + 1.0)
        };
        let step = nice_step(b - a, 6).max(1.0).round();
        let mut ticks = ticks_in(a, b, step);
        if ticks.is_empty() {
            ticks.push(a.round());
        }
        let labels = ticks.iter().map(|t| format!("{t:.0}")).collect();
        Axis {
            lo,
            hi,
            ticks,
            labels,
            minor: vec![],
        }
    }

    /// The interval 0..1 (fractions), slightly padded so lines at 0 and 1 stay visible.
    pub(super) fn unit_interval() -> Axis {
        let ticks: Vec<f64> = (0..=5).map(|k| k as f64 * 0.2).collect();
        Axis::with_linear_ticks(-0.03, 1.03, ticks, 0.2)
    }

    /// Logarithmic axis: `logs` are log10 of the data; ticks at powers of ten (or 1-2-5
    /// multiples within short ranges), labelled in the data's units.
    pub(super) fn log10(logs: &[f64]) -> Axis {
        let (a, b) = finite_range(logs).unwrap_or((-1.0, 0.0));
        let (lo, hi) = if b - a < 1e-9 {
            (a - 0.4, b + 0.4)
        } else {
            let pad = 0.05 * (b - a);
            (a - pad, b + pad)
        };
        let k0 = lo.ceil() as i64;
        let k1 = hi.floor() as i64;
        let decades: Vec<i64> = if k1 >= k0 {
            (k0..=k1).collect()
        } else {
            vec![]
        };
        if decades.len() >= 2 {
            let stride = decades.len().div_ceil(7).max(1) as i64;
            let ticks: Vec<i64> = decades.into_iter().filter(|k| k % stride == 0).collect();
            let ticks = if ticks.len() >= 2 {
                ticks
            } else {
                (k0..=k1).collect()
            };
            let labels = ticks.iter().map(|&k| power_of_ten(1, k)).collect();
            let mut minor = vec![];
            if k1 - k0 <= 5 {
                for k in (k0 - 1)..=k1 {
                    for m in 2..=9 {
                        let t = (m as f64).log10() + k as f64;
                        if t >= lo && t <= hi {
                            minor.push(t);
                        }
                    }
                }
            }
            return Axis {
                lo,
                hi,
                ticks: ticks.iter().map(|&k| k as f64).collect(),
                labels,
                minor,
            };
        }
        for mantissas in [&[1, 2, 5][..], &[1, 2, 3, 4, 5, 6, 7, 8, 9][..]] {
            let mut ticks = vec![];
            let mut labels = vec![];
            for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
                for &m in mantissas {
                    let t = (m as f64).log10() + k as f64;
                    if t >= lo && t <= hi {
                        ticks.push(t);
                        labels.push(power_of_ten(m, k));
                    }
                }
            }
            if ticks.len() >= 2 {
                return Axis {
                    lo,
                    hi,
                    ticks,
                    labels,
                    minor: vec![],
                };
            }
        }
        // Less than a factor of ~1.1: linear labels of the data values.
        let (dlo, dhi) = (10f64.powf(lo), 10f64.powf(hi));
        let step = nice_step(dhi - dlo, 4);
        let values = ticks_in(dlo, dhi, step);
        let labels = linear_labels(&values, step);
        Axis {
            lo,
            hi,
            ticks: values.iter().map(|v| v.log10()).collect(),
            labels,
            minor: vec![],
        }
    }
}

/// A linear plotters coordinate with our own ticks and minor grid lines.
pub(super) struct AxisCoord {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
    pub(super) minor: Vec<f64>,
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let t = if span > 0.0 && span.is_finite() {
            (v - self.lo) / span
        } else {
            0.5
        };
        let px = limit.0 as f64 + t * (limit.1 - limit.0) as f64;
        // Far outside the plot (or NaN): clamp instead of overflowing.
        px.clamp(-1e6, 1e6).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// "10⁻³" or "2×10⁻³".
pub(super) fn power_of_ten(mantissa: i64, exponent: i64) -> String {
    let sup: String = exponent
        .to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect();
    if mantissa == 1 {
        format!("10{sup}")
    } else {
        format!("{mantissa}×10{sup}")
    }
}

/// Labels of linear ticks spaced by `step` (a 1-2-5 multiple of a power of ten): fixed
/// decimals for moderate magnitudes, a common power of ten otherwise.
pub(super) fn linear_labels(ticks: &[f64], step: f64) -> Vec<String> {
    let max = ticks.iter().fold(0f64, |m, t| m.max(t.abs()));
    let step_exp = step.log10().floor();
    let clean = |t: f64| if t.abs() < step * 1e-6 { 0.0 } else { t };
    if max < 1e5 && step >= 1e-3 || max == 0.0 || !step.is_finite() {
        let decimals = (-step_exp).max(0.0) as usize;
        ticks
            .iter()
            .map(|&t| format!("{:.*}", decimals, clean(t)).replace('-', "−"))
            .collect()
    } else {
        let e = max.log10().floor();
        let decimals = (e - step_exp).max(0.0) as usize;
        ticks
            .iter()
            .map(|&t| {
                let t = clean(t);
                if t == 0.0 {
                    "0".to_string()
                } else {
                    let m = format!("{:.*}", decimals, t / 10f64.powf(e)).replace('-', "−");
                    let p = power_of_ten(1, e as i64);
                    format!("{m}×{p}")
                }
            })
            .collect()
    }
}

pub(super) fn finite_range(values: &[f64]) -> Option<(f64, f64)> {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, &v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Pads a data range by `frac` of its span on each side; a (nearly) constant range is
/// widened to 10 % of its magnitude (0.5 around zero).
pub(super) fn padded((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let scale = lo.abs().max(hi.abs());
    let span = hi - lo;
    if !span.is_finite() {
        return (-f64::MAX / 4.0, f64::MAX / 4.0);
    }
    if span <= 1e-9 * scale || span == 0.0 {
        let p = scale * 0.1;
        let p = if p.is_finite() && p > 1e-300 { p } else { 0.5 };
        let mid = 0.5 * (lo + hi);
        return (mid - p, mid + p);
    }
    (lo - frac * span, hi + frac * span)
}

/// A 1-2-5 multiple of a power of ten giving about `target` intervals over `span`.
pub(super) fn nice_step(span: f64, target: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n < 1.5 {
        1.0
    } else if n < 3.0 {
        2.0
    } else if n < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Multiples of `step` within [lo, hi] (at most 200).
pub(super) fn ticks_in(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if !(step.is_finite() && step > 0.0) {
        return vec![];
    }
    let k0 = (lo / step - 1e-9).ceil();
    let k1 = (hi / step + 1e-9).floor();
    if !(k0.is_finite() && k1.is_finite()) || k1 - k0 > 200.0 || k1 < k0 {
        return vec![];
    }
    (k0 as i64..=k1 as i64).map(|k| k as f64 * step).collect()
}
