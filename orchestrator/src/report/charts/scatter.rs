//! The cost/SLO-violation scatter: each policy's IQM point with its intervals and single seeds, and the Pareto
//! front through the non-dominated policies.

use std::fmt::Write as _;

use super::axes::{Axis, Plot, min_max};
use super::path::{path_data, step_corners};
use super::{Shared, Style, num};
use crate::report::format::escape;

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
