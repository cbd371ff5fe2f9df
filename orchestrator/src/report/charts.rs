//! Charts as inline SVG: time series, performance profiles and the cost/SLO scatter.
//!
//! Every chart has labelled axes with units, gridlines at round numbers, and series drawn in the Okabe-Ito
//! palette (safe for the common colour-vision deficiencies), cycling dash patterns past eight series. Legends are
//! HTML next to the SVG (see [`Legend`]), so they wrap at any width. Long series are downsampled to about one
//! point per eight pixels of plot width, fewer per series where many share a chart (largest-triangle-three-buckets,
//! which keeps peaks), step series keep only their changes, and a line drawn exactly over another is written
//! once, so a 900-second cell stays a few kilobytes. All text is escaped here; the templates insert the SVG
//! as is.

use std::fmt::Write as _;

use serde::Serialize;

use super::format::{escape, fmt_tick};

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

/// Matches the width a figure is shown at (max 600 px), so that 12-unit text reads as 12 px.
const WIDTH: f64 = 560.0;
const MARGIN_LEFT: f64 = 64.0;
/// Where style.css's `.y .t` rule puts the y axis's title, turned: 14 units from the left, at the middle of a
/// 220-unit chart's plot; a chart of another height moves it by the title's x.
const Y_TITLE: f64 = 95.0;
const MARGIN_RIGHT: f64 = 18.0;
const MARGIN_TOP: f64 = 12.0;
const MARGIN_BOTTOM: f64 = 42.0;
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

/// One policy in the cost/SLO scatter: its IQM point, intervals and per-seed values.
#[derive(Debug, Clone)]
pub struct ScatterPoint {
    pub label: String,
    pub x: f64,
    pub y: f64,
    pub x_interval: Option<(f64, f64)>,
    pub y_interval: Option<(f64, f64)>,
    pub runs: Vec<(f64, f64)>,
    pub style: Style,
    /// On the Pareto front (no other policy is at least as good on both axes and better on one).
    pub pareto: bool,
}

/// The cost/SLO-violation scatter: lower-left is better on both axes; the Pareto front is drawn through the
/// non-dominated policies.
pub fn scatter(points: &[ScatterPoint], x_label: &str, y_label: &str) -> String {
    let xs = points.iter().flat_map(|p| {
        let interval = p.x_interval.map(|(a, b)| [a, b]).unwrap_or([p.x, p.x]);
        [p.x].into_iter().chain(interval).chain(p.runs.iter().map(|r| r.0))
    });
    let ys = points.iter().flat_map(|p| {
        let interval = p.y_interval.map(|(a, b)| [a, b]).unwrap_or([p.y, p.y]);
        [p.y].into_iter().chain(interval).chain(p.runs.iter().map(|r| r.1))
    });
    let (x_min, x_max) = min_max(xs.filter(|v| v.is_finite())).unwrap_or((0.0, 1.0));
    let (_, y_max) = min_max(ys.filter(|v| v.is_finite())).unwrap_or((0.0, 1.0));
    let pad = ((x_max - x_min) * 0.08).max(x_max.abs() * 0.02).max(1e-9);
    let plot = Plot::new(280.0);
    let x_axis = Axis::linear(x_min - pad, x_max + pad, false);
    let y_axis = Axis::linear(0.0, if y_max > 0.0 { y_max * 1.05 } else { 1.0 }, true);
    let mut svg = plot.open();
    plot.grid_and_axes(&mut svg, &mut Shared::default(), &x_axis, &y_axis, x_label, y_label);
    let map = |x: f64, y: f64| plot.map(&x_axis, &y_axis, x, y);
    let mut front: Vec<(f64, f64)> = points.iter().filter(|p| p.pareto).map(|p| (p.x, p.y)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    if front.len() >= 2 {
        let corners: Vec<(f64, f64)> = step_corners(&front).into_iter().map(|(x, y)| map(x, y)).collect();
        let _ = write!(svg, "<path class=p d=\"{}\"/>", path_data(&corners));
    }
    // A policy's single seeds as rings in one group that says their style once.
    for p in points.iter().filter(|p| !p.runs.is_empty()) {
        let _ = write!(svg, "<g fill=none stroke={} stroke-opacity=.6>", p.style.color);
        for &(x, y) in &p.runs {
            let (cx, cy) = map(x, y);
            let _ = write!(svg, "<circle cx={} cy={} r=2.2 />", num(cx), num(cy));
        }
        svg.push_str("</g>");
    }
    for p in points {
        let (cx, cy) = map(p.x, p.y);
        if let Some((low, high)) = p.x_interval {
            let (a, _) = map(low, p.y);
            let (b, _) = map(high, p.y);
            let _ = write!(
                svg,
                "<path stroke={} stroke-width=1.5 d=\"M{} {}H{}\"/>",
                p.style.color,
                num(a),
                num(cy),
                num(b)
            );
        }
        if let Some((low, high)) = p.y_interval {
            let (_, a) = map(p.x, low);
            let (_, b) = map(p.x, high);
            let _ = write!(
                svg,
                "<path stroke={} stroke-width=1.5 d=\"M{} {}V{}\"/>",
                p.style.color,
                num(cx),
                num(a),
                num(b)
            );
        }
        // Labels to the right of their point, or to the left near the right edge.
        let (lx, anchor) = if cx > plot.right() - 110.0 { (cx - 7.0, "end") } else { (cx + 7.0, "start") };
        let _ = write!(
            svg,
            "<circle cx={} cy={} r=5 fill={} stroke=#fff /><text x={} y={} text-anchor={anchor}>{}</text>",
            num(cx),
            num(cy),
            p.style.color,
            num(lx),
            num(if cy < plot.top() + 14.0 { cy + 16.0 } else { cy - 7.0 }),
            escape(&p.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Plot geometry: the SVG box and the inner plotting area.
struct Plot {
    height: f64,
}

impl Plot {
    fn new(height: f64) -> Plot {
        Plot { height }
    }
    fn left(&self) -> f64 {
        MARGIN_LEFT
    }
    fn right(&self) -> f64 {
        WIDTH - MARGIN_RIGHT
    }
    fn top(&self) -> f64 {
        MARGIN_TOP
    }
    fn bottom(&self) -> f64 {
        self.height - MARGIN_BOTTOM
    }
    fn width(&self) -> f64 {
        self.right() - self.left()
    }

    fn map(&self, x_axis: &Axis, y_axis: &Axis, x: f64, y: f64) -> (f64, f64) {
        // Clamped: values outside a fixed range are drawn on its edge rather than over the labels.
        let fx = x_axis.fraction(x).clamp(0.0, 1.0);
        let fy = y_axis.fraction(y).clamp(0.0, 1.0);
        (self.left() + fx * self.width(), self.bottom() - fy * (self.bottom() - self.top()))
    }

    /// The SVG element, inside a figure whose caption names it; its text (axis titles, ticks) stays readable
    /// to assistive technology.
    fn open(&self) -> String {
        let mut svg = String::with_capacity(4096);
        let _ = write!(svg, "<svg viewBox=\"0 0 {WIDTH} {}\">", self.height);
        svg
    }

    /// The y axis (gridlines, tick labels, title), then the x axis (axis line, tick labels, title), each a
    /// group that `shared` may already hold. Anchors and text styles are said once, by the groups' classes
    /// (`y`, `x`, `t` in style.css).
    fn grid_and_axes(
        &self,
        svg: &mut String,
        shared: &mut Shared,
        x_axis: &Axis,
        y_axis: &Axis,
        x_label: &str,
        y_label: &str,
    ) {
        let (left, right) = (num(self.left()), num(self.right()));
        let mut grid = String::new();
        let mut labels = String::new();
        for &(value, ref label) in &y_axis.ticks {
            let y = self.bottom() - y_axis.fraction(value) * (self.bottom() - self.top());
            let _ = write!(grid, "M{left} {}H{right}", y.round());
            let _ = write!(labels, "<text y={}>{label}</text>", (y + 4.0).round());
        }
        // Gridlines apart from labels: charts with as many ticks share them even where the labels differ.
        shared.place(svg, &format!("<path class=h d=\"{grid}\"/>"));
        shared.place(
            svg,
            &format!(
                // Tick labels end 6 units left of the plot, x = 58, where the stylesheet moves the group
                // (`.y`, so MARGIN_LEFT is written there too); its title is turned and moved
                // to (14, Y_TITLE) (`.y .t`): further down by the title's x, as a quarter turn makes x into y.
                "<g class=y>{labels}<text class=t{}>{}</text></g>",
                match Y_TITLE - (self.top() + self.bottom()) / 2.0 {
                    0.0 => String::new(),
                    x => format!(" x={}", num(x)),
                },
                escape(y_label)
            ),
        );
        let mut x_group =
            format!("<g class=x><path class=a d=\"M{left} {}V{}H{right}\"/>", num(self.top()), num(self.bottom()));
        for &(value, ref label) in &x_axis.ticks {
            let x = self.left() + x_axis.fraction(value) * self.width();
            let _ = write!(x_group, "<text x={} y={}>{label}</text>", x.round(), num(self.bottom() + 17.0));
        }
        let _ = write!(
            x_group,
            "<text class=t x={} y={}>{}</text></g>",
            num(self.left() + self.width() / 2.0),
            num(self.height - 6.0),
            escape(x_label)
        );
        shared.place(svg, &x_group);
    }
}

/// An axis: its range, scale and labelled ticks.
struct Axis {
    low: f64,
    high: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    fn fraction(&self, value: f64) -> f64 {
        let (low, high, value) = if self.log {
            (self.low.log10(), self.high.log10(), value.max(1e-300).log10())
        } else {
            (self.low, self.high, value)
        };
        if high > low { (value - low) / (high - low) } else { 0.5 }
    }

    /// Round-number ticks; with `extend`, the range grows to the outer ticks.
    fn linear(low: f64, high: f64, extend: bool) -> Axis {
        let (low, high) = if high > low {
            (low, high)
        } else {
            (low - 0.5_f64.max(low.abs() * 0.1), high + 0.5_f64.max(high.abs() * 0.1))
        };
        let step = nice_step((high - low) / 5.0);
        let (low, high) = if extend { ((low / step).floor() * step, (high / step).ceil() * step) } else { (low, high) };
        Axis { low, high, log: false, ticks: ticks_between(low, high, step) }
    }

    fn fixed(low: f64, high: f64) -> Axis {
        let step = nice_step((high - low) / 5.0);
        Axis { low, high, log: false, ticks: ticks_between(low, high, step) }
    }

    /// Seconds, ticked at round minutes when the span allows.
    fn time(low: f64, high: f64) -> Axis {
        let span = (high - low).max(1.0);
        let steps = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0];
        let step = steps.iter().copied().find(|s| span / s <= 6.0).unwrap_or_else(|| nice_step(span / 6.0));
        let high = if high > low { high } else { low + 1.0 };
        // A 900 s scenario's last row is t = 899: close the axis on the round 900.
        let rounded = (high / step).ceil() * step;
        let high = if rounded - high <= 0.05 * span { rounded } else { high };
        Axis { low, high, log: false, ticks: ticks_between(low, high, step) }
    }

    /// Decades, with 2 and 5 in between when the range spans few of them.
    fn log(low: f64, high: f64) -> Axis {
        let low = 10f64.powf(low.max(1e-6).log10().floor());
        let high = 10f64.powf(high.max(low * 10.0).log10().ceil());
        let decades = (high / low).log10().round() as i32;
        let mantissas: &[f64] = if decades <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
        let mut ticks = Vec::new();
        let mut decade = low;
        while decade <= high * 1.0001 {
            for m in mantissas {
                let v = decade * m;
                if v <= high * 1.0001 {
                    ticks.push((v, fmt_tick(v, v)));
                }
            }
            decade *= 10.0;
        }
        Axis { low, high, log: true, ticks }
    }
}

fn ticks_between(low: f64, high: f64, step: f64) -> Vec<(f64, String)> {
    let first = (low / step - 1e-9).ceil() as i64;
    let last = (high / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).map(|v| (v, fmt_tick(v, step))).collect()
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 2.5 {
        2.5
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((low, high)) => Some((low.min(v), high.max(v))),
    })
}

/// Largest-triangle-three-buckets downsampling to at most `budget` points, keeping the first and last and, per
/// bucket, the point that spans the largest triangle with its neighbours (so spikes survive).
pub fn lttb(points: &[(f64, f64)], budget: usize) -> Vec<(f64, f64)> {
    if budget < 3 || points.len() <= budget {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(budget);
    out.push(points[0]);
    let bucket = (points.len() - 2) as f64 / (budget - 2) as f64;
    let mut previous = 0;
    for i in 0..budget - 2 {
        let start = (i as f64 * bucket) as usize + 1;
        let end = (((i + 1) as f64 * bucket) as usize + 1).min(points.len() - 1);
        let next_end = (((i + 2) as f64 * bucket) as usize + 1).min(points.len());
        let next = &points[end..next_end.max(end + 1)];
        let (ax, ay) = next.iter().fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
        let (ax, ay) = (ax / next.len() as f64, ay / next.len() as f64);
        let (px, py) = points[previous];
        let mut best = start;
        let mut best_area = -1.0;
        for (j, &(x, y)) in points.iter().enumerate().take(end).skip(start) {
            let area = ((px - ax) * (y - py) - (px - x) * (ay - py)).abs();
            if area > best_area {
                best_area = area;
                best = j;
            }
        }
        out.push(points[best]);
        previous = best;
    }
    out.push(points[points.len() - 1]);
    out
}

/// Keeps only the ends of each run of equal values: a metrics-server figure that holds for 15 s is two points.
pub fn drop_flat_runs(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    for (i, &p) in points.iter().enumerate() {
        let same_as_before = i > 0 && points[i - 1].1 == p.1;
        let same_as_after = i + 1 < points.len() && points[i + 1].1 == p.1;
        if !(same_as_before && same_as_after) {
            out.push(p);
        }
    }
    out
}

/// Ramer-Douglas-Peucker: the fewest points that keep the line within `tolerance` of every original point.
pub fn simplify(points: &[(f64, f64)], tolerance: f64) -> Vec<(f64, f64)> {
    if points.len() <= 2 {
        return points.to_vec();
    }
    let mut keep = vec![false; points.len()];
    keep[0] = true;
    keep[points.len() - 1] = true;
    let mut stack = vec![(0, points.len() - 1)];
    while let Some((first, last)) = stack.pop() {
        let (ax, ay) = points[first];
        let (bx, by) = points[last];
        let (dx, dy) = (bx - ax, by - ay);
        let length = (dx * dx + dy * dy).sqrt();
        let mut farthest = (0.0, first);
        for (i, &(x, y)) in points.iter().enumerate().take(last).skip(first + 1) {
            let distance = if length > 0.0 {
                ((x - ax) * dy - (y - ay) * dx).abs() / length
            } else {
                ((x - ax).powi(2) + (y - ay).powi(2)).sqrt()
            };
            if distance > farthest.0 {
                farthest = (distance, i);
            }
        }
        if farthest.0 > tolerance {
            keep[farthest.1] = true;
            stack.push((first, farthest.1));
            stack.push((farthest.1, last));
        }
    }
    points.iter().zip(keep).filter(|(_, k)| *k).map(|(p, _)| *p).collect()
}

/// A step series as the corners of its staircase: each value holds until the next point.
pub fn step_corners(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        match out.last() {
            None => out.push((x, y)),
            Some(&(_, last_y)) if last_y == y && i + 1 < points.len() => {}
            Some(&(_, last_y)) => {
                if last_y != y {
                    out.push((x, last_y));
                }
                out.push((x, y));
            }
        }
    }
    out
}

/// An SVG path through `points` (already in SVG units): absolute start, then relative moves in whole units,
/// dropping repeats and merging straight horizontal or vertical runs.
fn path_data(points: &[(f64, f64)]) -> String {
    let mut out = String::with_capacity(points.len() * 6);
    let rounded: Vec<(i64, i64)> = points.iter().map(|&(x, y)| (x.round() as i64, y.round() as i64)).collect();
    let Some(&(x0, y0)) = rounded.first() else { return out };
    let _ = write!(out, "M{x0} {y0}");
    let mut moves: Vec<(i64, i64)> = Vec::with_capacity(rounded.len());
    for pair in rounded.windows(2) {
        let (dx, dy) = (pair[1].0 - pair[0].0, pair[1].1 - pair[0].1);
        if dx == 0 && dy == 0 {
            continue;
        }
        match moves.last_mut() {
            Some(last)
                if (last.1 == 0 && dy == 0 && last.0.signum() == dx.signum())
                    || (last.0 == 0 && dx == 0 && last.1.signum() == dy.signum()) =>
            {
                last.0 += dx;
                last.1 += dy;
            }
            _ => moves.push((dx, dy)),
        }
    }
    let mut last_command = ' ';
    for (dx, dy) in moves {
        let (command, text) = match (dx, dy) {
            (dx, 0) => ('h', dx.to_string()),
            (0, dy) => ('v', dy.to_string()),
            (dx, dy) => ('l', if dy < 0 { format!("{dx}{dy}") } else { format!("{dx} {dy}") }),
        };
        if command != last_command {
            out.push(command);
        } else if !text.starts_with('-') {
            out.push(' ');
        }
        out.push_str(&text);
        last_command = command;
    }
    out
}

/// A coordinate with at most one decimal.
fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 { format!("{}", rounded as i64) } else { format!("{rounded:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lttb_keeps_ends_and_spikes_within_budget() {
        let mut points: Vec<(f64, f64)> = (0..900).map(|t| (t as f64, 10.0)).collect();
        points[437].1 = 500.0;
        let kept = lttb(&points, 100);
        assert_eq!(kept.len(), 100);
        assert_eq!(kept[0], points[0]);
        assert_eq!(kept[99], points[899]);
        assert!(kept.contains(&(437.0, 500.0)), "the spike survives");
        assert_eq!(lttb(&points[..50], 100).len(), 50);
    }

    #[test]
    fn flat_runs_keep_their_ends() {
        let points = [(0.0, 5.0), (1.0, 5.0), (2.0, 5.0), (3.0, 7.0), (4.0, 8.0), (5.0, 8.0), (6.0, 8.0)];
        assert_eq!(drop_flat_runs(&points), vec![(0.0, 5.0), (2.0, 5.0), (3.0, 7.0), (4.0, 8.0), (6.0, 8.0)]);
    }

    #[test]
    fn simplify_drops_points_on_the_line_and_keeps_corners() {
        let points = [(0.0, 0.0), (1.0, 0.1), (2.0, 0.0), (3.0, 5.0), (4.0, 10.0), (5.0, 10.0)];
        assert_eq!(simplify(&points, 0.5), vec![(0.0, 0.0), (2.0, 0.0), (4.0, 10.0), (5.0, 10.0)]);
    }

    #[test]
    fn step_corners_keep_only_changes() {
        let points: Vec<(f64, f64)> = [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 3.0), (4.0, 3.0), (5.0, 3.0)].to_vec();
        assert_eq!(step_corners(&points), vec![(0.0, 1.0), (3.0, 1.0), (3.0, 3.0), (5.0, 3.0)]);
    }

    #[test]
    fn path_data_is_relative_and_merges_straight_runs() {
        let d = path_data(&[(10.0, 20.0), (15.0, 20.0), (20.0, 20.0), (20.0, 10.0), (25.0, 14.0), (30.0, 9.0)]);
        assert_eq!(d, "M10 20h10v-10l5 4 5-5");
    }

    #[test]
    fn nice_steps_are_round_numbers() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(17.0), 20.0);
        assert_eq!(nice_step(2.2), 2.5);
        assert_eq!(nice_step(100.0), 100.0);
        let axis = Axis::time(0.0, 899.0);
        let ticks: Vec<f64> = axis.ticks.iter().map(|t| t.0).collect();
        assert_eq!(ticks, vec![0.0, 180.0, 360.0, 540.0, 720.0, 900.0]);
        let log = Axis::log(12.0, 2600.0);
        let labels: Vec<&str> = log.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, vec!["10", "100", "1,000", "10,000"]);
        let narrow = Axis::log(12.0, 260.0);
        let labels: Vec<&str> = narrow.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, vec!["10", "20", "50", "100", "200", "500", "1,000"]);
    }

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
