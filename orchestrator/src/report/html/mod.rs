//! The pages: view models built from the run and its analysis, rendered with the tera templates under
//! orchestrator/templates/ (embedded in the binary). Templates escape every value; only SVG built by
//! [`super::charts`] and [`super::graph`], which escape their own text, is inserted unescaped.
//!
//! Links into the run folder are kept relative to it in the views; the templates prefix them with `logs`, so
//! the same view renders for the report on disk (pointing at logs/<run-tag>/) and inside the zip (logs/).
//!
//! `index` builds the run's index page, `cell` a cell's page, and `table` the figures of the result
//! tables that the index and the comparison of runs share.

mod cell;
mod index;
mod table;

use anyhow::{Context as _, Result};
use serde::Serialize;
use tera::{Context, Tera};

use super::format::{escape, url_segment};

pub use cell::{CellView, cell_view};
pub use index::{IndexView, TableRow, index_view, policy_styles, run_meta};
pub use table::{Column, TableCell, columns_for, table_cell};

pub struct Renderer {
    tera: Tera,
}

impl Renderer {
    pub fn new() -> Result<Renderer> {
        let mut tera = Tera::default();
        tera.add_raw_templates(vec![
            ("style.css", include_str!("../../../templates/style.css")),
            ("index.css", include_str!("../../../templates/index.css")),
            ("cell.css", include_str!("../../../templates/cell.css")),
            ("base.html", include_str!("../../../templates/base.html")),
            ("macros.html", include_str!("../../../templates/macros.html")),
            ("index.html", include_str!("../../../templates/index.html")),
            ("cell.html", include_str!("../../../templates/cell.html")),
            ("compare.html", include_str!("../../../templates/compare.html")),
        ])
        .context("loading the report templates")?;
        // Tera's own escaping also writes `/` as `&#x2F;`; HTML needs only & < > " ' escaped.
        tera.set_escape_fn(escape);
        Ok(Renderer { tera })
    }

    /// Renders `template` with `view`; `logs` is the link prefix of the run folder as seen from the page. The
    /// page's inline stylesheet keeps only the rules its markup can match.
    pub fn render(&self, template: &str, view: &impl Serialize, logs: &str) -> Result<String> {
        let mut context = Context::from_serialize(view).context("building the template context")?;
        context.insert("logs", logs);
        context.insert("version", env!("CARGO_PKG_VERSION"));
        let page = self.tera.render(template, &context).with_context(|| format!("rendering {template}"))?;
        Ok(super::css::prune_page(&page))
    }
}

/// Where a cell's page lives, relative to the report folder.
pub fn cell_page(id: &str) -> String {
    format!("cells/{}.html", url_segment(id))
}

/// The file name of a cell's page on disk.
pub fn cell_page_file(id: &str) -> String {
    format!("{id}.html")
}
