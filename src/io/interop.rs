//! Parameters and data as NumPy files: `.npz` parameter sets with arrays W, b, E, c, D, d
//! (rows = postsynaptic, so a PyTorch Linear weight (out, in) maps directly) and `.npy`
//! batches with one sample per row, as NumPy and PyTorch store them.

use crate::error::{ensure_finite, LcsimError, Result};
use crate::io::npz::{read_npy, read_npz, write_npz, NpyArray};
use crate::numerics::activation::Activation;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use nalgebra::DMatrix;
use std::collections::BTreeMap;
use std::path::Path;

/// A 2-D matrix from a 1-D (n,) array (as n x 1) or a 2-D (r, c) C-order array.
pub fn matrix_from_npy(name: &str, a: &NpyArray) -> Result<DMatrix<f64>> {
    let m = match a.shape.as_slice() {
        [n] => DMatrix::from_column_slice(*n, 1, &a.data),
        [r, c] => DMatrix::from_row_slice(*r, *c, &a.data),
        _ => {
            return Err(LcsimError::Shape {
                field: name.into(),
                expected: "a 1-D or 2-D array".into(),
                found: format!("shape {:?}", a.shape),
            })
        }
    };
    ensure_finite(name, m.as_slice())?;
    Ok(m)
}

/// A 2-D (rows, cols) C-order array, or 1-D when `as_vector` and the matrix has one column.
pub fn npy_from_matrix(m: &DMatrix<f64>, as_vector: bool) -> NpyArray {
    if as_vector && m.ncols() == 1 {
        NpyArray {
            shape: vec![m.nrows()],
            data: m.as_slice().to_vec(),
        }
    } else {
        NpyArray {
            shape: vec![m.nrows(), m.ncols()],
            data: m.transpose().as_slice().to_vec(),
        }
    }
}

/// Saves a system's parameters ([`EquilibriumSystem::exported_params`]: for the rate net
/// [`RateNetwork::named_arrays`]); vectors are 1-D.
pub fn save_params<S: crate::system::EquilibriumSystem>(path: &Path, net: &S) -> Result<()> {
    let arrays: Vec<(String, NpyArray)> = net
        .exported_params()
        .into_iter()
        .map(|(n, m)| (n, npy_from_matrix(&m, true)))
        .collect();
    let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    Ok(write_npz(path, &refs)?)
}

/// Loads feedback weights (feedback.npz of a run: B, G or Q) with the names and shapes of
/// `layout`. Errors name the file and the missing or misshapen array.
pub fn load_feedback(path: &Path, layout: &Params) -> Result<Params> {
    let names: Vec<&str> = layout.names().collect();
    load_params_like(
        path,
        layout,
        &format!("the controller's feedback weights {names:?}"),
    )
}

/// Loads the tensors of `layout` (same names and shapes, all finite) from an .npz file, e.g.
/// a conv system's params.npz; `required` says what the file should hold in errors, which
/// name the file and the missing or misshapen array.
pub fn load_params_like(path: &Path, layout: &Params, required: &str) -> Result<Params> {
    let names: Vec<&str> = layout.names().collect();
    let missing = |name: &str| LcsimError::MissingArray {
        name: name.to_string(),
        path: path.to_path_buf(),
        required: required.to_string(),
    };
    if !path.is_file() {
        return Err(missing(names.first().copied().unwrap_or_default()));
    }
    let raw = read_npz(path)?;
    let mut out = layout.clone();
    for (i, name) in names.iter().enumerate() {
        let a = raw.get(*name).ok_or_else(|| missing(name))?;
        let field = format!("{}: {name}", path.display());
        let m = matrix_from_npy(&field, a)?;
        if m.shape() != layout.tensor(i).shape() {
            return Err(LcsimError::Shape {
                field,
                expected: format!("{:?}", layout.tensor(i).shape()),
                found: format!("{:?}", m.shape()),
            });
        }
        *out.tensor_mut(i) = m;
    }
    Ok(out)
}

/// Loads a network from an .npz parameter set; `layered` selects the layout of
/// [`RateNetwork::from_named_arrays`].
pub fn load_params(path: &Path, layered: bool, activation: Activation) -> Result<RateNetwork> {
    let raw = read_npz(path)?;
    let mut arrays = BTreeMap::new();
    for (name, a) in &raw {
        arrays.insert(name.clone(), matrix_from_npy(name, a)?);
    }
    RateNetwork::from_named_arrays(&arrays, layered, activation).map_err(|e| match e {
        LcsimError::MissingArray { name, required, .. } => LcsimError::MissingArray {
            name,
            path: path.to_path_buf(),
            required,
        },
        other => other,
    })
}

/// Loads a batch of inputs stored one sample per row, (B, n_x) (or (n_x,) for one sample),
/// as an n_x x B matrix.
pub fn load_inputs(path: &Path) -> Result<DMatrix<f64>> {
    let a = read_npy(path)?;
    let field = path.display().to_string();
    match a.shape.as_slice() {
        [n] => matrix_from_npy(&field, &a)
            .map(|m| m.reshape_generic(nalgebra::Dyn(*n), nalgebra::Dyn(1))),
        [_, _] => matrix_from_npy(&field, &a).map(|m| m.transpose()),
        _ => Err(LcsimError::Shape {
            field,
            expected: "(B, n_x) with one sample per row".into(),
            found: format!("shape {:?}", a.shape),
        }),
    }
}

/// Targets (n_y x B) from a labels file: integer class labels (B,) become one-hot
/// columns; a (B, n_y) array is used as given (regression targets or distributions).
pub fn load_targets(path: &Path, n_y: usize) -> Result<DMatrix<f64>> {
    let a = read_npy(path)?;
    let field = path.display().to_string();
    match a.shape.as_slice() {
        [_] => {
            let mut labels = Vec::with_capacity(a.data.len());
            for (i, &l) in a.data.iter().enumerate() {
                if !(l.fract() == 0.0 && l >= 0.0 && (l as usize) < n_y) {
                    return Err(LcsimError::InvalidValue {
                        field: format!("{field}[{i}]"),
                        value: l.to_string(),
                        allowed: format!("an integer class label in 0..{n_y}"),
                    });
                }
                labels.push(l as usize);
            }
            Ok(crate::system::loss::one_hot(&labels, n_y))
        }
        [_, c] if *c == n_y => matrix_from_npy(&field, &a).map(|m| m.transpose()),
        _ => Err(LcsimError::Shape {
            field,
            expected: format!("(B,) integer labels or (B, {n_y}) targets"),
            found: format!("shape {:?}", a.shape),
        }),
    }
}
