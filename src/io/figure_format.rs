//! The file format of a figure (PNG or SVG), free of plotters types.

use serde::{Deserialize, Serialize};
/// File format of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FigureFormat {
    /// Portable Network Graphics (RGB bitmap).
    Png,
    /// Scalable Vector Graphics (text kept as text).
    Svg,
}

impl FigureFormat {
    /// The conventional file extension, without the dot: `"png"` or `"svg"`.
    pub fn extension(self) -> &'static str {
        match self {
            FigureFormat::Png => "png",
            FigureFormat::Svg => "svg",
        }
    }
}
