//! From data points to SVG path data: downsampling (largest-triangle-three-buckets), dropping flat runs and
//! points on a straight line, step corners, and the compact relative path syntax.

use std::fmt::Write as _;

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
pub(super) fn path_data(points: &[(f64, f64)]) -> String {
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
}
