//! Rendering to a file: the PNG and SVG backends, atomic writes via a temporary file.

use super::style::{ensure_font, TextFix};
use crate::error::{LcsimError, Result};
use crate::io::figure_format::FigureFormat;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A drawing failure, as text.
pub(super) struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

pub(super) type DResult<T> = std::result::Result<T, DrawError>;

/// Renders `fig` to a temporary file next to `path`, then renames it onto `path`.
pub(super) fn render(fig: &impl Drawable, path: &Path, format: FigureFormat) -> Result<()> {
    let io_err = |source: std::io::Error| LcsimError::Io {
        path: path.to_path_buf(),
        source,
    };
    let draw_err = |e: DrawError| io_err(std::io::Error::other(format!("drawing failed: {}", e.0)));
    ensure_font().map_err(|m| io_err(std::io::Error::other(m)))?;
    let tmp = create_temp(path, format).map_err(io_err)?;
    let outcome = match format {
        FigureFormat::Png => {
            let result = {
                let root = BitMapBackend::new(&tmp.0, fig.size()).into_drawing_area();
                fig.draw_on(&root, TextFix::BITMAP)
                    .and_then(|()| root.present().map_err(DrawError::from))
            };
            result.map_err(draw_err)
        }
        FigureFormat::Svg => {
            let mut text = String::new();
            let result = {
                let root = SVGBackend::with_string(&mut text, fig.size()).into_drawing_area();
                fig.draw_on(&root, TextFix::NONE)
                    .and_then(|()| root.present().map_err(DrawError::from))
            };
            result
                .map_err(draw_err)
                .and_then(|()| std::fs::write(&tmp.0, text).map_err(io_err))
        }
    };
    outcome?;
    std::fs::rename(&tmp.0, path).map_err(io_err)?;
    tmp.disarm();
    Ok(())
}

/// Something [`render`] can draw: a [`Figure`] of panels or a [`Heatmap`].
pub(super) trait Drawable {
    fn size(&self) -> (u32, u32);
    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        fix: TextFix,
    ) -> DResult<()>;
}

/// A temporary file that is removed on drop unless disarmed (after the rename).
struct TempFile(PathBuf, bool);

impl TempFile {
    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Creates an empty, uniquely named hidden file in the directory of `path`. Its name ends in
/// the format's extension (the bitmap encoder picks the format from it).
fn create_temp(path: &Path, format: FigureFormat) -> std::io::Result<TempFile> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "figure".to_string());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{name}.{}.{n}.tmp.{}",
            std::process::id(),
            format.extension()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(_) => return Ok(TempFile(tmp, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}
