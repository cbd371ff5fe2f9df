//! Charts as inline SVG: time series, performance profiles and the cost/SLO scatter.
//!
//! Every chart has labelled axes with units, gridlines at round numbers, and series drawn in the Okabe-Ito
//! palette (safe for the common colour-vision deficiencies), cycling dash patterns past eight series. Legends are
//! HTML next to the SVG (see [`Legend`]), so they wrap at any width. Long series are downsampled to about one
//! point per eight pixels of plot width, fewer per series where many share a chart (largest-triangle-three-buckets,
//! which keeps peaks), step series keep only their changes, and a line drawn exactly over another is written
//! once, so a 900-second cell stays a few kilobytes. All text is escaped here; the templates insert the SVG
//! as is.
//!
//! `line` draws the x-y charts, `scatter` the cost/SLO scatter; both place their data with `axes` (plot
//! geometry, scales, ticks) and write it with `path` (downsampling and SVG path data).

mod axes;
mod line;
mod path;
mod scatter;

use std::fmt::Write as _;

use serde::Serialize;

pub use line::{Band, LineChart, RefLine, Scale, Series, Shape};
pub use path::{drop_flat_runs, lttb, simplify, step_corners};
pub use scatter::{ScatterPoint, scatter};

/// Okabe & Ito (2008), ordered so that the first colours contrast best on white; yellow last.
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000", "#F0E442"];
const DASHES: [&str; 3] = ["", "6 3", "2 2"];

/// The stroke of series number `index`: a colour, then a dash pattern once the colours run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Style {
    pub color: &'static str,
    pub dash: &'static str,
    index: usize,
}

impl Style {
    /// The classes that draw this style (style.css): `c0`..`c7` set the colour (`--c`) that strokes, legend
    /// swatches and dots take, `d1` and `d2` the dash pattern. One class is shorter than its colour written out
    /// on every series and legend swatch.
    pub fn class(&self) -> String {
        let dash = (self.index / PALETTE.len()) % DASHES.len();
        let color = self.index % PALETTE.len();
        if dash == 0 { format!("c{color}") } else { format!("c{color} d{dash}") }
    }
}

pub fn style(index: usize) -> Style {
    Style {
        color: PALETTE[index % PALETTE.len()],
        dash: DASHES[(index / PALETTE.len()) % DASHES.len()],
        index: index % (PALETTE.len() * DASHES.len()),
    }
}

/// One legend entry, rendered by the template as a swatch and a label.
#[derive(Debug, Clone, Serialize)]
pub struct LegendEntry {
    pub label: String,
    /// The swatch's classes: its shape (`fw` a faint wide line, `dot`, none for a line) and its style's.
    pub class: String,
    /// An inline style, for a swatch in a colour outside the palette.
    pub style: String,
}

impl LegendEntry {
    /// A line swatch; `faint` for a wide, light reference line.
    pub fn line(label: &str, style: Style, faint: bool) -> LegendEntry {
        let class = if faint { format!("fw {}", style.class()) } else { style.class() };
        LegendEntry { label: label.into(), class, style: String::new() }
    }

    pub fn dot(label: &str, style: Style) -> LegendEntry {
        LegendEntry { label: label.into(), class: format!("dot {}", style.class()), style: String::new() }
    }

    /// A dashed line swatch in `color`.
    pub fn dashed(label: &str, color: &str) -> LegendEntry {
        LegendEntry { label: label.into(), class: "d1".into(), style: format!("--c:{color}") }
    }
}

pub type Legend = Vec<LegendEntry>;

/// A chart ready for a template.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub title: String,
    pub svg: String,
    pub legend: Legend,
    pub note: String,
    /// Shown wider than a chart (the service graph).
    pub wide: bool,
}

/// Markup that the charts of one page draw alike, written once. The time charts of a cell page share their
/// x axis (and often a y axis): the first chart writes such a fragment as a group with an id, later charts a
/// `<use>` of it. Inline SVGs of one HTML document can refer to each other's elements, so the page stays
/// self-contained.
#[derive(Debug, Default)]
pub struct Shared {
    /// Whether fragments get ids and are reused; off for a chart standing alone.
    reuse: bool,
    written: Vec<String>,
}

impl Shared {
    /// Fragments are reused across every chart rendered with this registry; one registry per page, since the
    /// ids (`u1`, `u2`...) are unique only within it.
    pub fn page() -> Shared {
        Shared { reuse: true, written: Vec::new() }
    }

    /// Writes `element` (one element, e.g. `<g class=ya>...</g>`), or a `<use>` of the same element written
    /// before.
    fn place(&mut self, svg: &mut String, element: &str) {
        if !self.reuse {
            svg.push_str(element);
            return;
        }
        match self.written.iter().position(|w| w == element) {
            Some(i) => {
                let _ = write!(svg, "<use href=#u{} />", i + 1);
            }
            None => {
                self.written.push(element.to_string());
                // The id goes right after the element's name.
                let name_end = element.find([' ', '>']).unwrap_or(element.len());
                let _ = write!(svg, "{} id=u{}{}", &element[..name_end], self.written.len(), &element[name_end..]);
            }
        }
    }
}

/// A coordinate with at most one decimal.
fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 { format!("{}", rounded as i64) } else { format!("{rounded:.1}") }
}
