//! Plot geometry and axes: the SVG box and its margins, linear, fixed, time and log axes with ticks at round
//! numbers, and the gridlines and labels every chart draws.

use std::fmt::Write as _;

use super::{Shared, num};
use crate::report::format::{escape, fmt_tick};

/// Matches the width a figure is shown at (max 600 px), so that 12-unit text reads as 12 px.
const WIDTH: f64 = 560.0;
const MARGIN_LEFT: f64 = 64.0;
/// Where style.css's `.y .t` rule puts the y axis's title, turned: 14 units from the left, at the middle of a
/// 220-unit chart's plot; a chart of another height moves it by the title's x.
const Y_TITLE: f64 = 95.0;
const MARGIN_RIGHT: f64 = 18.0;
const MARGIN_TOP: f64 = 12.0;
const MARGIN_BOTTOM: f64 = 42.0;

/// Plot geometry: the SVG box and the inner plotting area.
pub(super) struct Plot {
    height: f64,
}

impl Plot {
    pub(super) fn new(height: f64) -> Plot {
        Plot { height }
    }
    pub(super) fn left(&self) -> f64 {
        MARGIN_LEFT
    }
    pub(super) fn right(&self) -> f64 {
        WIDTH - MARGIN_RIGHT
    }
    pub(super) fn top(&self) -> f64 {
        MARGIN_TOP
    }
    fn bottom(&self) -> f64 {
        self.height - MARGIN_BOTTOM
    }
    pub(super) fn width(&self) -> f64 {
        self.right() - self.left()
    }

    pub(super) fn map(&self, x_axis: &Axis, y_axis: &Axis, x: f64, y: f64) -> (f64, f64) {
        // Clamped: values outside a fixed range are drawn on its edge rather than over the labels.
        let fx = x_axis.fraction(x).clamp(0.0, 1.0);
        let fy = y_axis.fraction(y).clamp(0.0, 1.0);
        (self.left() + fx * self.width(), self.bottom() - fy * (self.bottom() - self.top()))
    }

    /// The SVG element, inside a figure whose caption names it; its text (axis titles, ticks) stays readable
    /// to assistive technology.
    pub(super) fn open(&self) -> String {
        let mut svg = String::with_capacity(4096);
        let _ = write!(svg, "<svg viewBox=\"0 0 {WIDTH} {}\">", self.height);
        svg
    }

    /// The y axis (gridlines, tick labels, title), then the x axis (axis line, tick labels, title), each a
    /// group that `shared` may already hold. Anchors and text styles are said once, by the groups' classes
    /// (`y`, `x`, `t` in style.css).
    pub(super) fn grid_and_axes(
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
pub(super) struct Axis {
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
    pub(super) fn linear(low: f64, high: f64, extend: bool) -> Axis {
        let (low, high) = if high > low {
            (low, high)
        } else {
            (low - 0.5_f64.max(low.abs() * 0.1), high + 0.5_f64.max(high.abs() * 0.1))
        };
        let step = nice_step((high - low) / 5.0);
        let (low, high) = if extend { ((low / step).floor() * step, (high / step).ceil() * step) } else { (low, high) };
        Axis { low, high, log: false, ticks: ticks_between(low, high, step) }
    }

    pub(super) fn fixed(low: f64, high: f64) -> Axis {
        let step = nice_step((high - low) / 5.0);
        Axis { low, high, log: false, ticks: ticks_between(low, high, step) }
    }

    /// Seconds, ticked at round minutes when the span allows.
    pub(super) fn time(low: f64, high: f64) -> Axis {
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
    pub(super) fn log(low: f64, high: f64) -> Axis {
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

pub(super) fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((low, high)) => Some((low.min(v), high.max(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
