//! The x-y chart: lines, steps, bands and reference lines over a linear or log axis, its series downsampled to
//! the plot's width.

use std::fmt::Write as _;

use super::axes::{Axis, Plot, min_max};
use super::path::{drop_flat_runs, lttb, path_data, simplify, step_corners};
use super::{Legend, LegendEntry, Shared, Style, num};
use crate::report::format::escape;

/// Plot pixels per kept point of a downsampled series.
const PIXELS_PER_POINT: f64 = 8.0;
/// Points closer than this to the line through their neighbours are dropped (Ramer-Douglas-Peucker).
const SIMPLIFY_PX: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic; values ≤ 0 are left out.
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Line,
    /// Holds each value until the next (replica counts).
    Step,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub shape: Shape,
    pub style: Style,
    /// Wide and light, drawn beneath the others: a reference the other lines are read against (e.g. offered
    /// load under the achieved one).
    pub faint: bool,
}

/// A shaded interval around a series (e.g. a bootstrap band).
#[derive(Debug, Clone)]
pub struct Band {
    pub points: Vec<(f64, f64, f64)>,
    pub color: &'static str,
}

/// A labelled horizontal reference line (e.g. the SLO threshold).
#[derive(Debug, Clone)]
pub struct RefLine {
    pub y: f64,
    pub label: String,
}

/// An x-y chart of lines, steps and bands.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub x_label: String,
    pub y_label: String,
    pub height: f64,
    pub y_scale: Scale,
    /// The x axis is time in seconds: ticks at whole minutes where they fit.
    pub x_is_time: bool,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    pub ref_lines: Vec<RefLine>,
}

impl LineChart {
    pub fn new(x_label: &str, y_label: &str) -> LineChart {
        LineChart {
            x_label: x_label.into(),
            y_label: y_label.into(),
            height: 220.0,
            y_scale: Scale::Linear,
            x_is_time: false,
            x_range: None,
            y_range: None,
            series: Vec::new(),
            bands: Vec::new(),
            ref_lines: Vec::new(),
        }
    }

    pub fn time(y_label: &str) -> LineChart {
        LineChart { x_is_time: true, ..LineChart::new("time since start (s)", y_label) }
    }

    pub fn legend(&self) -> Legend {
        self.series
            .iter()
            .filter(|s| !s.label.is_empty())
            .map(|s| LegendEntry::line(&s.label, s.style, s.faint))
            .collect()
    }

    /// The chart as a standalone SVG.
    pub fn render(&self) -> String {
        self.render_in(&mut Shared::default())
    }

    /// The chart as SVG, reusing the axes other charts of the page wrote in `shared`.
    pub fn render_in(&self, shared: &mut Shared) -> String {
        let usable = |y: f64| y.is_finite() && (self.y_scale == Scale::Linear || y > 0.0);
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let xs = xs.chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)));
        let (x_min, x_max) =
            self.x_range.unwrap_or_else(|| min_max(xs.filter(|x| x.is_finite())).unwrap_or((0.0, 1.0)));
        let ys = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let ys = ys.chain(self.bands.iter().flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])));
        let ys = ys.chain(self.ref_lines.iter().map(|r| r.y));
        let data_y = min_max(ys.filter(|&y| usable(y)));
        let plot = Plot::new(self.height);
        let x_axis = if self.x_is_time { Axis::time(x_min, x_max) } else { Axis::linear(x_min, x_max, false) };
        let y_axis = match (self.y_range, self.y_scale) {
            (Some((low, high)), Scale::Linear) => Axis::fixed(low, high),
            (None, Scale::Linear) => {
                let (low, high) = data_y.unwrap_or((0.0, 1.0));
                Axis::linear(low.min(0.0), high, true)
            }
            (range, Scale::Log) => {
                let (low, high) = range.or(data_y).unwrap_or((1.0, 10.0));
                Axis::log(low, high)
            }
        };
        let mut svg = plot.open();
        plot.grid_and_axes(&mut svg, shared, &x_axis, &y_axis, &self.x_label, &self.y_label);
        for band in &self.bands {
            let upper: Vec<(f64, f64)> = band.points.iter().map(|p| (p.0, p.2)).collect();
            let lower: Vec<(f64, f64)> = band.points.iter().rev().map(|p| (p.0, p.1)).collect();
            let outline: Vec<(f64, f64)> =
                upper.into_iter().chain(lower).map(|(x, y)| plot.map(&x_axis, &y_axis, x, y)).collect();
            if outline.len() >= 3 {
                let _ = write!(svg, "<path fill={} fill-opacity=.18 d=\"{}Z\"/>", band.color, path_data(&outline));
            }
        }
        // Faint reference lines first, so the others are drawn over them; the others in one group that sets
        // their width (see the `s` and `f` rules of style.css).
        let mut lines = String::new();
        let mut drawn: Vec<(bool, String, String)> = Vec::new();
        let ordered = self.series.iter().filter(|s| s.faint).chain(self.series.iter().filter(|s| !s.faint));
        for series in ordered {
            let points: Vec<(f64, f64)> =
                series.points.iter().copied().filter(|p| p.0.is_finite() && usable(p.1)).collect();
            if points.is_empty() {
                continue;
            }
            // Many series share the chart's budget of points, one per PIXELS_PER_POINT for a single series.
            let count = self.series.len().max(1) as f64;
            let budget = ((plot.width() / PIXELS_PER_POINT / count.sqrt()) as usize).max(20);
            let mapped: Vec<(f64, f64)> = match series.shape {
                Shape::Line => lttb(&drop_flat_runs(&points), budget),
                Shape::Step => step_corners(&points),
            }
            .into_iter()
            .map(|(x, y)| plot.map(&x_axis, &y_axis, x, y))
            .collect();
            // What the eye cannot see at this size need not be written down.
            let mapped = if series.shape == Shape::Line { simplify(&mapped, SIMPLIFY_PX) } else { mapped };
            let class = if series.faint { format!("f {}", series.style.class()) } else { series.style.class() };
            // Attribute values without spaces go unquoted, as HTML allows: two bytes each, hundreds a page.
            let class = if class.contains(' ') { format!("\"{class}\"") } else { class };
            let (shape, element) = if mapped.len() == 1 {
                let (x, y) = mapped[0];
                (
                    format!("{} {}", num(x), num(y)),
                    format!("<circle class={class} cx={} cy={} r=2.5 />", num(x), num(y)),
                )
            } else {
                let d = path_data(&mapped);
                let element = format!("<path class={class} d=\"{d}\"/>");
                (d, element)
            };
            drawn.push((series.faint, shape, element));
        }
        // A line drawn exactly over an earlier one hides it (five idle services all at one replica): only the
        // top one is written; the legend still names every series.
        for (i, (faint, shape, element)) in drawn.iter().enumerate() {
            if drawn[i + 1..].iter().any(|(f, s, _)| f == faint && s == shape) {
                continue;
            }
            if *faint { svg.push_str(element) } else { lines.push_str(element) }
        }
        if !lines.is_empty() {
            let _ = write!(svg, "<g class=s>{lines}</g>");
        }
        for line in &self.ref_lines {
            if !usable(line.y) {
                continue;
            }
            let (_, y) = plot.map(&x_axis, &y_axis, x_min, line.y);
            let _ = write!(
                svg,
                "<path class=r d=\"M{} {}H{}\"/><text class=q x={} y={}>{}</text>",
                num(plot.left()),
                y.round(),
                num(plot.right()),
                num(plot.right() - 4.0),
                (y - 4.0).round(),
                escape(&line.label)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::style;

    #[test]
    fn labels_are_escaped() {
        let mut chart = LineChart::time("<script>");
        chart.series.push(Series {
            label: "a<b".into(),
            points: vec![(0.0, 1.0), (1.0, 2.0)],
            shape: Shape::Line,
            style: style(0),
            faint: false,
        });
        chart.ref_lines.push(RefLine { y: 1.5, label: "\"x\" & <y>".into() });
        let svg = chart.render();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("&quot;x&quot; &amp; &lt;y&gt;"));
    }

    #[test]
    fn a_line_hidden_under_an_identical_one_is_not_written() {
        let step = |label: &str, index: usize, top: f64| Series {
            label: label.into(),
            points: vec![(0.0, 1.0), (300.0, 1.0), (600.0, top), (900.0, top)],
            shape: Shape::Step,
            style: style(index),
            faint: false,
        };
        let mut chart = LineChart::time("ready pods");
        chart.series = vec![step("idle-a", 0, 1.0), step("busy", 1, 4.0), step("idle-b", 2, 1.0)];
        let svg = chart.render();
        assert_eq!(svg.matches("<path class=c").count(), 2, "{svg}");
        assert!(!svg.contains("class=c0 "), "idle-a lies under idle-b: {svg}");
        assert!(svg.contains("class=c2 ") && svg.contains("class=c1 "), "{svg}");
        assert_eq!(chart.legend().len(), 3, "the legend still names every series");
    }
}
