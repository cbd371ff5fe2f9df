//! GET /metrics: Prometheus text exposition of the most recent run, under the de-facto locust_exporter metric
//! names (`locust_users`, `locust_running`, `locust_requests_*{method,name}`, `locust_errors{method,name,error}`).
//! Cumulative figures cover the whole run; `current_*` figures its last closed one-second window.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::runs::Latest;
use super::store;
use crate::stats::{Collector, Entry, StatsSnapshot, Summary};

/// Escapes a label value as the text format wants: backslash, double quote and line feed.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// GET /metrics
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let text = match state.registry.latest() {
        Some(Latest::Live(handle)) => {
            let status = handle.status();
            let collector = handle.collector();
            let stats = collector.lock().unwrap_or_else(|e| e.into_inner());
            render(Some((&stats, !status.state.is_over(), status.users)))
        }
        Some(Latest::Stored(dir)) => {
            let stats = tokio::task::spawn_blocking(move || store::stored_stats(&dir))
                .await
                .ok()
                .flatten()
                .and_then(|snapshot| StatsSnapshot::merge(&[snapshot]).ok());
            render(stats.as_ref().map(|stats| (stats, false, 0)))
        }
        None => render(None),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

/// Renders the latest run's figures; `current` figures come from its last closed one-second window.
pub fn render(stats: Option<(&Collector, bool, u64)>) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let (running, users) = stats.map_or((false, 0), |(_, running, users)| (running, users));
    gauge(&mut out, "locust_running", "Whether a run is going on (1) or not (0)");
    let _ = writeln!(out, "locust_running {}", running as u8);
    gauge(&mut out, "locust_users", "Users running");
    let _ = writeln!(out, "locust_users {users}");
    let Some((stats, _, _)) = stats else { return out };

    let window = stats.history().last();
    let current = |entry: &Entry| -> Option<&Summary> {
        let window = window?;
        if entry.name == crate::stats::AGGREGATED && entry.method.is_empty() {
            return Some(&window.total.summary);
        }
        window.entries.iter().map(|e| &e.summary).find(|e| e.name == entry.name && e.method == entry.method)
    };
    let rows: Vec<&Entry> = stats.entries().chain(std::iter::once(stats.total())).collect();
    type Figure = fn(&Entry, Option<&Summary>) -> f64;
    let figures: [(&str, &str, Figure); 11] = [
        ("locust_requests_num_requests", "Requests so far", |e, _| e.requests as f64),
        ("locust_requests_num_failures", "Failed requests so far", |e, _| e.failures as f64),
        ("locust_requests_avg_response_time", "Mean response time (ms)", |e, _| e.mean_ms()),
        ("locust_requests_min_response_time", "Fastest response (ms)", |e, _| e.min_us as f64 / 1000.0),
        ("locust_requests_max_response_time", "Slowest response (ms)", |e, _| e.max_us as f64 / 1000.0),
        ("locust_requests_median_response_time", "Median response time (ms)", |e, _| e.percentile_ms(0.5)),
        ("locust_requests_avg_content_length", "Mean body size (bytes)", |e, _| {
            if e.requests == 0 { 0.0 } else { e.content_bytes as f64 / e.requests as f64 }
        }),
        ("locust_requests_current_rps", "Requests in the last second", |_, c| c.map_or(0.0, |c| c.requests as f64)),
        ("locust_requests_current_fail_per_sec", "Failures in the last second", |_, c| {
            c.map_or(0.0, |c| c.failures as f64)
        }),
        ("locust_requests_current_response_time_percentile_50", "p50 of the last second (ms)", |_, c| {
            c.map_or(0.0, |c| c.percentile_ms(0.5))
        }),
        ("locust_requests_current_response_time_percentile_95", "p95 of the last second (ms)", |_, c| {
            c.map_or(0.0, |c| c.percentile_ms(0.95))
        }),
    ];
    for (name, help, figure) in figures {
        gauge(&mut out, name, help);
        for entry in &rows {
            let current = current(entry);
            let _ = writeln!(
                out,
                "{name}{{method=\"{}\",name=\"{}\"}} {}",
                label(&entry.method),
                label(&entry.name),
                figure(entry, current)
            );
        }
    }
    gauge(&mut out, "locust_errors", "Failures by error");
    for failure in stats.failures() {
        let _ = writeln!(
            out,
            "locust_errors{{method=\"{}\",name=\"{}\",error=\"{}\"}} {}",
            label(&failure.key.method),
            label(&failure.key.name),
            label(&failure.key.error),
            failure.occurrences
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_locust_exporter_names_with_escaped_labels() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut c = Collector::new(0);
        c.record("GET", "/a\"b", 2000, 10, None);
        c.record("GET", "/a\"b", 4000, 10, Some("HTTPError 500"));
        c.close_window(3);
        let text = render(Some((&c, true, 3)));
        assert!(text.contains("locust_running 1\n"));
        assert!(text.contains("locust_users 3\n"));
        assert!(text.contains("locust_requests_num_requests{method=\"GET\",name=\"/a\\\"b\"} 2\n"), "{text}");
        assert!(text.contains("locust_requests_num_requests{method=\"\",name=\"Aggregated\"} 2\n"));
        assert!(text.contains("locust_requests_current_rps{method=\"GET\",name=\"/a\\\"b\"} 2\n"));
        assert!(text.contains("locust_errors{method=\"GET\",name=\"/a\\\"b\",error=\"HTTPError 500\"} 1\n"));
        for name in [
            "locust_requests_num_failures",
            "locust_requests_current_fail_per_sec",
            "locust_requests_avg_response_time",
            "locust_requests_min_response_time",
            "locust_requests_max_response_time",
            "locust_requests_median_response_time",
            "locust_requests_current_response_time_percentile_50",
            "locust_requests_current_response_time_percentile_95",
            "locust_requests_avg_content_length",
        ] {
            for row in ["method=\"GET\",name=\"/a\\\"b\"", "method=\"\",name=\"Aggregated\""] {
                assert!(text.contains(&format!("{name}{{{row}}} ")), "{name}{{{row}}} missing:\n{text}");
            }
            assert!(text.contains(&format!("# TYPE {name} gauge\n")));
        }
        assert!(text.contains("locust_requests_min_response_time{method=\"GET\",name=\"/a\\\"b\"} 2\n"));
        assert!(text.contains("locust_requests_max_response_time{method=\"GET\",name=\"/a\\\"b\"} 4\n"));
        assert!(text.contains("locust_requests_current_fail_per_sec{method=\"\",name=\"Aggregated\"} 1\n"));
        assert!(text.contains("locust_requests_avg_content_length{method=\"GET\",name=\"/a\\\"b\"} 10\n"));
        // Every sample line is `name{labels} value` or `name value` with a number.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        let idle = render(None);
        assert!(idle.contains("locust_running 0\n") && idle.contains("locust_users 0\n"), "{idle}");
        assert!(!idle.contains("locust_requests_"));
    }

    #[test]
    fn a_label_with_a_newline_stays_on_one_line() {
        let mut c = Collector::new(0);
        c.record("GET", "/x", 1000, 0, Some("line one\nline \\two\""));
        let text = render(Some((&c, false, 0)));
        assert!(text.contains("locust_running 0\n"));
        assert!(
            text.contains("locust_errors{method=\"GET\",name=\"/x\",error=\"line one\\nline \\\\two\\\"\"} 1\n"),
            "{text}"
        );
        // No window closed yet: current figures are 0.
        assert!(text.contains("locust_requests_current_rps{method=\"GET\",name=\"/x\"} 0\n"));
    }
}
