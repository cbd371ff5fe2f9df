//! The service graph of a cell as SVG: services laid out in layers by call depth, coloured by mean CPU
//! utilization, edges as wide as their call rate.
//!
//! Call rates come from the app model's call trees weighted by the scenario's request mix (task weights, as the
//! simulator derives them), times the cell's mean achieved requests/s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use load_agent::scenario::Scenario;
use serde_yaml::Value as Yaml;

use super::format::{escape, fmt_num};
use crate::app::{AppModel, Call};

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// Calls over this edge per request entering the app.
    pub calls_per_request: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub services: Vec<String>,
    pub edges: Vec<Edge>,
    /// False when the scenario could not be read: every route then counts the same.
    pub mix_known: bool,
}

/// Why a cell's service graph cannot be drawn from its config.yaml.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopologyError {
    #[error("config.yaml has no `app`")]
    NoApp,
    /// The app does not read as an app model: the parser's words (kept as text, so a cell record stays `Clone`).
    #[error("config.yaml app: {0}")]
    BadApp(String),
    #[error("config.yaml app has no routes")]
    NoRoutes,
}

/// The services and call edges of a cell's resolved config (config.yaml).
pub fn topology(config: &Yaml) -> Result<Topology, TopologyError> {
    let app_value = config.get("app").ok_or(TopologyError::NoApp)?;
    // The resolved config was validated when the run started; the walk below still tolerates a bad name.
    let app: AppModel = serde_yaml::from_value(app_value.clone()).map_err(|e| TopologyError::BadApp(e.to_string()))?;
    if app.routes.is_empty() {
        return Err(TopologyError::NoRoutes);
    }
    // Through a JSON tree, as load_agent::yaml reads scenario files: serde_yaml wants an enum such as
    // `wait: {constant_throughput: 1}` tagged (`!constant_throughput 1`), so every such scenario would look
    // unreadable.
    let scenario: Option<Scenario> = config
        .get("scenario")
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|json| serde_json::from_value::<Scenario>(json).ok())
        .filter(|s| s.validate().is_ok());
    let shares = scenario.as_ref().and_then(|s| route_shares(&app, s));
    let mix_known = shares.is_some();
    let shares = shares.unwrap_or_else(|| vec![1.0 / app.routes.len() as f64; app.routes.len()]);
    let mut edges: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for (route, share) in app.routes.iter().zip(&shares) {
        add_calls(&app, &route.call, *share, &mut edges);
        if let Some(target) = route.redirect.as_deref().and_then(|r| app.route_index(r)) {
            add_calls(&app, &app.routes[target].call, *share, &mut edges);
        }
    }
    // Edges that exist in the model but carry no traffic under this scenario still belong in the picture.
    for route in &app.routes {
        add_calls(&app, &route.call, 0.0, &mut edges);
    }
    Ok(Topology {
        services: app.services.iter().map(|s| s.name.clone()).collect(),
        edges: edges.into_iter().map(|((from, to), calls)| Edge { from, to, calls_per_request: calls }).collect(),
        mix_known,
    })
}

fn add_calls(app: &AppModel, call: &Call, calls: f64, edges: &mut BTreeMap<(usize, usize), f64>) {
    let Some(from) = app.service_index(&call.service) else { return };
    for child in &call.calls {
        let Some(to) = app.service_index(&child.service) else { continue };
        let child_calls = calls * child.count;
        *edges.entry((from, to)).or_insert(0.0) += child_calls;
        add_calls(app, child, child_calls, edges);
    }
}

/// Share of requests each route receives: user-class weight × task probability × requests of the task.
fn route_shares(app: &AppModel, scenario: &Scenario) -> Option<Vec<f64>> {
    let mut per_route = vec![0.0; app.routes.len()];
    let class_total: f64 = scenario.users.iter().map(|u| u.weight as f64).sum();
    for user in &scenario.users {
        let task_total: f64 = user.tasks.iter().map(|t| t.weight as f64).sum();
        for task in &user.tasks {
            let weight = user.weight as f64 / class_total * task.weight as f64 / task_total;
            for request in &task.requests {
                if let Some(route) = app.route_for(scenario, request.kind()) {
                    per_route[route] += weight;
                }
            }
        }
    }
    let total: f64 = per_route.iter().sum();
    (total > 0.0).then(|| per_route.into_iter().map(|r| r / total).collect())
}

/// Light yellow to dark red (ColorBrewer YlOrRd): ordered by lightness, so it reads without colour vision too.
const HEAT: [(u8, u8, u8); 5] = [(255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38)];

fn heat(utilization_pct: f64) -> (String, bool) {
    let f = (utilization_pct / 100.0).clamp(0.0, 1.0) * (HEAT.len() - 1) as f64;
    let i = (f.floor() as usize).min(HEAT.len() - 2);
    let t = f - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + t * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (HEAT[i], HEAT[i + 1]);
    let (r, g, bl) = (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2));
    let luminance = 0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * bl as f64;
    (short_hex(r, g, bl), luminance < 128.0)
}

/// A colour as three hex digits: each channel within 8 of its value (1/32 of the range), which no one sees on a
/// node box, and three bytes shorter than six digits.
fn short_hex(r: u8, g: u8, b: u8) -> String {
    let digit = |c: u8| (c as f64 / 17.0).round() as u8;
    format!("#{:x}{:x}{:x}", digit(r), digit(g), digit(b))
}

const WIDTH: f64 = 720.0;
/// Edge stroke colour and width by step of calls/s, from light and thin to dark and wide.
const EDGE_STEPS: [(&str, f64); 5] = [("#ccd", 1.0), ("#aab", 2.0), ("#889", 3.0), ("#556", 4.5), ("#334", 6.0)];
const NODE_H: f64 = 34.0;
const NODE_SLOT: f64 = 46.0;
/// Vertical room of an edge passing through a column (a virtual node).
const PASS_SLOT: f64 = 14.0;
const TOP: f64 = 10.0;
/// The legend's colour bar, right of its caption.
const LEGEND_BAR_X: i64 = 214;
const LEGEND_BAR_W: i64 = 200;

/// An item of a column: a service, or an edge passing through on its way to a later column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Service(usize),
    Pass { edge: usize },
}

/// Renders `topology` with each service's mean CPU utilization (None: unknown) and `entry_rps` requests/s.
///
/// Layout after Sugiyama: columns by longest call chain; an edge spanning several columns gets a pass-through
/// slot in each column between, so that it runs between the services instead of across them; a few sweeps of
/// the barycentre heuristic order each column to reduce crossings.
pub fn render(topology: &Topology, utilization_pct: &[Option<f64>], entry_rps: f64) -> String {
    let n = topology.services.len();
    let layer = layers(n, &topology.edges);
    let column_count = layer.iter().copied().max().map_or(1, |m| m + 1);
    let mut columns: Vec<Vec<Item>> = vec![Vec::new(); column_count];
    for (service, &l) in layer.iter().enumerate() {
        columns[l].push(Item::Service(service));
    }
    for (edge, e) in topology.edges.iter().enumerate() {
        for column in columns.iter_mut().take(layer[e.to]).skip(layer[e.from] + 1) {
            column.push(Item::Pass { edge });
        }
    }
    // Where an item's neighbours are: the caller side of a service is its callers; of a pass, the column before.
    let rank_in = |columns: &Vec<Vec<Item>>, c: usize, item: Item| -> Option<f64> {
        let column = columns.get(c)?;
        column.iter().position(|&i| i == item).map(|p| p as f64 / column.len().max(1) as f64)
    };
    for sweep in 0..4 {
        let forward = sweep % 2 == 0;
        let order: Vec<usize> =
            if forward { (1..column_count).collect() } else { (0..column_count.saturating_sub(1)).rev().collect() };
        for c in order {
            let neighbour = if forward { c - 1 } else { c + 1 };
            let mut keyed: Vec<(f64, usize, Item)> = columns[c]
                .iter()
                .enumerate()
                .map(|(position, &item)| {
                    let linked: Vec<Item> = linked_items(topology, &layer, item, c, neighbour);
                    let ranks: Vec<f64> = linked.iter().filter_map(|&l| rank_in(&columns, neighbour, l)).collect();
                    let own = position as f64 / columns[c].len() as f64;
                    let key = if ranks.is_empty() { own } else { ranks.iter().sum::<f64>() / ranks.len() as f64 };
                    (key, position, item)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            columns[c] = keyed.into_iter().map(|(_, _, item)| item).collect();
        }
    }
    let slot = |item: &Item| if matches!(item, Item::Service(_)) { NODE_SLOT } else { PASS_SLOT };
    let graph_h = columns.iter().map(|c| c.iter().map(slot).sum::<f64>()).fold(NODE_SLOT, f64::max);
    let column_w = WIDTH / column_count as f64;
    let node_w = (column_w - 40.0).clamp(70.0, 170.0);
    // Centre y of every item, and each column's left x.
    let mut centre: std::collections::HashMap<(usize, usize), f64> = std::collections::HashMap::new();
    let mut service_y = vec![0.0; n];
    for (c, column) in columns.iter().enumerate() {
        let mut y = TOP + (graph_h - column.iter().map(slot).sum::<f64>()) / 2.0;
        for item in column {
            let middle = y + slot(item) / 2.0;
            match *item {
                Item::Service(s) => service_y[s] = middle,
                Item::Pass { edge } => {
                    centre.insert((edge, c), middle);
                }
            }
            y += slot(item);
        }
    }
    let box_left = |c: usize| c as f64 * column_w + (column_w - node_w) / 2.0;

    let legend_y = TOP + graph_h + 14.0;
    let height = legend_y + 40.0;
    let mut svg = String::with_capacity(4096);
    let _ = write!(svg, "<svg viewBox=\"0 0 {WIDTH} {height:.0}\">");
    // The node box, drawn once and placed per service; the legend's colour bar is the heat scale itself.
    let _ =
        write!(svg, "<defs><rect id=gn width={node_w:.0} height={NODE_H} rx=5 stroke=#555 /><linearGradient id=gh>");
    for (i, (r, g, b)) in HEAT.iter().enumerate() {
        // A stop's offset defaults to 0: the first needs none.
        let offset = 100 * i / (HEAT.len() - 1);
        let offset = if i == 0 { String::new() } else { format!("offset={offset}% ") };
        let _ = write!(svg, "<stop {offset}stop-color={} />", short_hex(*r, *g, *b));
    }
    svg.push_str("</linearGradient></defs>");
    let max_rate = topology.edges.iter().map(|e| e.calls_per_request * entry_rps).fold(0.0, f64::max);
    // Edges in five steps of width and darkness: legible steps, and short markup.
    let mut by_level: BTreeMap<usize, String> = BTreeMap::new();
    for (index, edge) in topology.edges.iter().enumerate() {
        let rate = edge.calls_per_request * entry_rps;
        let weight = if max_rate > 0.0 { (rate / max_rate).sqrt() } else { 0.0 };
        let level = 1 + (weight * 4.0).round() as usize;
        let (from_c, to_c) = (layer[edge.from], layer[edge.to]);
        // Waypoints: out of the caller's right side, straight through each pass slot, into the callee's left.
        let mut points = vec![(box_left(from_c) + node_w, service_y[edge.from])];
        for c in from_c + 1..to_c {
            let y = centre[&(index, c)];
            points.push((box_left(c), y));
            points.push((box_left(c) + node_w, y));
        }
        let backwards = to_c <= from_c;
        let end = if backwards {
            (box_left(to_c) + node_w, service_y[edge.to] + 6.0)
        } else {
            (box_left(to_c) - 1.0, service_y[edge.to])
        };
        points.push(end);
        let points: Vec<(i64, i64)> = points.iter().map(|&(x, y)| (x.round() as i64, y.round() as i64)).collect();
        // Relative moves from the start: a straight run, or a curve leaving and entering horizontally.
        let mut d = format!("M{} {}", points[0].0, points[0].1);
        for pair in points.windows(2) {
            let (dx, dy) = (pair[1].0 - pair[0].0, pair[1].1 - pair[0].1);
            if dy == 0 && dx > 0 {
                let _ = write!(d, "h{dx}");
            } else {
                let bend = (dx.abs() / 2).max(if backwards { 60 } else { 20 });
                let second = if backwards { dx + bend } else { dx - bend };
                let _ = write!(d, "c{}", numbers(&[bend, 0, second, dy, dx, dy]));
            }
        }
        // The arrowhead is an open chevron at the end of the same path: one element per edge.
        if !backwards {
            // After a move, further pairs are lines.
            d.push_str("m-6-4 6 4-6 4");
        }
        by_level.entry(level).or_default().push_str(&d);
    }
    // The edges of one step are the subpaths of one path: they share every attribute (and the SVG's
    // `fill:none`, style.css).
    for (level, d) in by_level {
        let (stroke, width) = EDGE_STEPS[level - 1];
        let _ = write!(svg, "<path stroke={stroke} stroke-width={width} d=\"{d}\"/>");
    }
    svg.push_str("<g class=g>");
    for (s, name) in topology.services.iter().enumerate() {
        let (x, y) = (box_left(layer[s]), service_y[s] - NODE_H / 2.0);
        let utilization = utilization_pct.get(s).copied().flatten();
        let (fill, dark) = utilization.map_or(("#eeeeee".to_string(), false), heat);
        // About 6.4 units per character at 11 px: a name that would overflow its box is set at 10 px (the
        // second line's `u`), and squeezed only if it still would.
        let chars = name.chars().count() as f64;
        let small = chars * 6.4 > node_w - 8.0;
        let squeeze = if small && chars * 5.8 > node_w - 8.0 {
            format!(" textLength={:.0} lengthAdjust=spacingAndGlyphs", node_w - 8.0)
        } else {
            String::new()
        };
        let class = match (small, dark) {
            (false, false) => "",
            (false, true) => " class=d",
            (true, false) => " class=u",
            (true, true) => " class=\"u d\"",
        };
        let calls_in: f64 = topology.edges.iter().filter(|e| e.to == s).map(|e| e.calls_per_request * entry_rps).sum();
        let cx = x + node_w / 2.0;
        let _ = write!(
            svg,
            "<use href=#gn x={x:.0} y={y:.0} fill={fill} /><text x={cx:.0} y={:.0}{class}{squeeze}>{}</text><text{} x={cx:.0} y={:.0}>{}</text>",
            y + 14.0,
            escape(name),
            // Set small by style.css (every second text of the group).
            if dark { " class=d" } else { "" },
            y + 27.0,
            match utilization {
                // The note under the graph says the percentage is CPU utilization.
                Some(u) if calls_in > 0.0 => format!("{} % · {}/s", fmt_num(u), fmt_num(calls_in)),
                Some(u) => format!("{} %", fmt_num(u)),
                None => "CPU unknown".into(),
            },
        );
    }
    svg.push_str("</g>");
    // Legend: the colour scale, ticked at 0, 50 and 100 %, and what an edge's width means.
    let (bar_x, bar_w) = (LEGEND_BAR_X, LEGEND_BAR_W);
    let _ = write!(
        svg,
        "<g class=k><text x=0 y={y:.0}>mean CPU utilization of requests:</text><rect x={bar_x} y={:.0} width={bar_w} height=12 fill=url(#gh) /><g class=t>",
        legend_y + 2.0,
        y = legend_y + 12.0,
    );
    for (i, label) in ["0 %", "50 %", "≥100 %"].iter().enumerate() {
        let _ = write!(svg, "<text x={} y={:.0}>{label}</text>", bar_x + i as i64 * bar_w / 2, legend_y + 27.0);
    }
    let _ = write!(
        svg,
        "</g><text x={} y={:.0}>edges: wider and darker with more calls/s</text></g></svg>",
        bar_x + bar_w + 24,
        legend_y + 12.0
    );
    svg
}

/// Integers of a path command, separated only where a sign does not separate them already.
fn numbers(values: &[i64]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 && *v >= 0 {
            out.push(' ');
        }
        let _ = write!(out, "{v}");
    }
    out
}

/// The items in column `neighbour` an item of column `c` connects to.
fn linked_items(topology: &Topology, layer: &[usize], item: Item, c: usize, neighbour: usize) -> Vec<Item> {
    let at = |edge: usize, column: usize| -> Item {
        let e = &topology.edges[edge];
        if layer[e.from] == column {
            Item::Service(e.from)
        } else if layer[e.to] == column {
            Item::Service(e.to)
        } else {
            Item::Pass { edge }
        }
    };
    let spans = |edge: usize, column: usize| {
        let e = &topology.edges[edge];
        layer[e.from] <= column && column <= layer[e.to]
    };
    match item {
        Item::Pass { edge } => vec![at(edge, neighbour)],
        Item::Service(s) => topology
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| (e.from == s || e.to == s) && e.from != e.to)
            .filter(|&(i, _)| spans(i, c) && spans(i, neighbour))
            .map(|(i, _)| at(i, neighbour))
            .collect(),
    }
}

/// Column of each service: its longest call chain from a service nobody calls (cycles are cut).
fn layers(n: usize, edges: &[Edge]) -> Vec<usize> {
    let mut layer = vec![0usize; n];
    // Bellman-Ford style relaxation, bounded so that a cycle cannot loop forever.
    for _ in 0..n {
        let mut changed = false;
        for e in edges {
            if e.from != e.to && layer[e.to] < layer[e.from] + 1 && layer[e.from] + 1 < n {
                layer[e.to] = layer[e.from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_the_longest_call_chain() {
        let edge = |from, to| Edge { from, to, calls_per_request: 1.0 };
        // 0 -> 1 -> 2, and 0 -> 2 directly: 2 sits after 1.
        assert_eq!(layers(3, &[edge(0, 1), edge(1, 2), edge(0, 2)]), vec![0, 1, 2]);
        // A cycle ends, bounded by the number of services.
        let cyclic = layers(2, &[edge(0, 1), edge(1, 0)]);
        assert!(cyclic.iter().all(|&l| l < 2));
    }

    #[test]
    fn the_request_mix_of_a_scenario_with_a_wait_map_is_read() {
        let config = format!(
            "app:\n{}\nscenario:\n{}",
            indent(include_str!("../../../experiments/apps/online-boutique.yaml")),
            indent(include_str!("../../../experiments/scenarios/online-boutique/peak.yaml"))
        );
        let config: Yaml = serde_yaml::from_str(&config).unwrap();
        let topology = topology(&config).unwrap();
        assert!(topology.mix_known, "peak.yaml's mix is read");
        // Only GET /cart is requested: the frontend calls the cart service once per request.
        let index = |name: &str| topology.services.iter().position(|s| s == name).unwrap();
        let cart = topology.edges.iter().find(|e| e.from == index("frontend") && e.to == index("cartservice")).unwrap();
        assert!(cart.calls_per_request > 0.0, "{cart:?}");
        let ads = topology.edges.iter().find(|e| e.to == index("adservice")).unwrap();
        assert_eq!(ads.calls_per_request, 0.0, "no request of peak.yaml reaches the ad service: {ads:?}");
    }

    fn indent(text: &str) -> String {
        text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn heat_runs_from_light_to_dark() {
        assert_eq!(heat(0.0), ("#ffc".to_string(), false));
        assert_eq!(heat(250.0), ("#802".to_string(), true));
        // Halfway between #fed976 and #fd8d3c: (253.5, 179, 91) to the nearest 17.
        assert_eq!(heat(37.5), ("#fb5".to_string(), false));
    }
}
