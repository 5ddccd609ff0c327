//! How a sweep shows things in tables and figures: swept values (as text and as numbers),
//! axis labels and legend symbols of config keys, labels of result columns, a run's overrides.

use super::folder::Sweep;
use super::plan::RunEntry;

/// A swept value as shown in tables and figures: strings without quotes, a list of one
/// value as that value (`[64]` -> `64`).
pub fn display_value(text: &str) -> String {
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .filter(|r| !r.contains(','))
        .unwrap_or(t);
    inner.trim().trim_matches('"').to_string()
}

/// A swept value as a number: `0.1`, `64`, or a list of one number `[64]`.
pub fn numeric_value(text: &str) -> Option<f64> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// An axis label for a config key: its symbol and the key, e.g. "α (controller.alpha)".
pub fn key_label(key: &str) -> String {
    let symbol = match key {
        "controller.alpha" => "leak α",
        "controller.k_i" => "integral gain kᵢ",
        "controller.k_p" => "proportional gain kₚ",
        "dynamics.tau_e" => "τₑ / τᵥ",
        "dynamics.tau_u" => "τᵤ / τᵥ",
        "dynamics.tau_v" => "τᵥ",
        "model.hidden" => "hidden units",
        "training.learning_rate" => "learning rate",
        _ => return key.to_string(),
    };
    format!("{symbol} ({key})")
}

/// The symbol of a config key in legends ("α"), or its last part ("batch_size").
pub fn key_symbol(key: &str) -> String {
    match key {
        "controller.alpha" => "α".into(),
        "controller.k_i" => "kᵢ".into(),
        "controller.k_p" => "kₚ".into(),
        "dynamics.tau_e" => "τₑ".into(),
        "dynamics.tau_u" => "τᵤ".into(),
        "dynamics.tau_v" => "τᵥ".into(),
        _ => key.rsplit('.').next().unwrap_or(key).to_string(),
    }
}

/// A label for a result column.
pub fn metric_label(metric: &str) -> String {
    match metric {
        "final_test_accuracy" => "test accuracy (last epoch)".into(),
        "final_test_loss" => "test loss (last epoch)".into(),
        "final_train_accuracy" => "training accuracy (last epoch)".into(),
        "final_train_loss" => "training loss (last epoch)".into(),
        "final_mean_h" => "mean H = ½|ψ*|² (last epoch)".into(),
        "fraction_converged" => "fraction of controlled solves converged".into(),
        "mean_fraction_unconverged" => "fraction of controlled solves unconverged".into(),
        "final_fraction_unconverged" => "fraction unconverged (last epoch)".into(),
        "mean_steps" => "mean solver steps per controlled solve".into(),
        other => other.to_string(),
    }
}

/// A run's overrides in the manifest's key order, e.g. `controller.alpha=0.1 model.hidden=[64]`.
pub fn overrides_text(sweep: &Sweep, run: &RunEntry) -> String {
    sweep
        .manifest
        .keys
        .iter()
        .filter_map(|k| run.overrides.get(k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
}
