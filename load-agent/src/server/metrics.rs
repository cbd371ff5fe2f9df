//! Prometheus text exposition of the latest run, under the de-facto locust_exporter metric names.

use std::fmt::Write;

use crate::stats::{Collector, Entry};

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders the latest run's figures; `current` figures come from its last closed one-second window.
pub fn render(stats: Option<(&Collector, bool, u64)>) -> String {
    let mut out = String::new();
    let Some((stats, running, users)) = stats else {
        out.push_str(
            "# HELP locust_running Whether a run is going on\n# TYPE locust_running gauge\nlocust_running 0\n",
        );
        return out;
    };
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(&mut out, "locust_running", "Whether a run is going on");
    let _ = writeln!(out, "locust_running {}", running as u8);
    gauge(&mut out, "locust_users", "Users running");
    let _ = writeln!(out, "locust_users {users}");

    let window = stats.history().last();
    let current = |entry: &Entry| -> Option<Entry> {
        let window = window?;
        if entry.name == crate::stats::AGGREGATED && entry.method.is_empty() {
            return Some(window.total.clone());
        }
        window.entries.iter().find(|e| e.name == entry.name && e.method == entry.method).cloned()
    };
    let rows: Vec<&Entry> = stats.entries().chain(std::iter::once(stats.total())).collect();
    type Figure = fn(&Entry, Option<&Entry>) -> f64;
    let figures: [(&str, &str, Figure); 11] = [
        ("locust_requests_num_requests", "Requests so far", |e, _| e.requests as f64),
        ("locust_requests_num_failures", "Failed requests so far", |e, _| e.failures as f64),
        ("locust_requests_avg_response_time", "Mean response time (ms)", |e, _| e.mean_ms()),
        ("locust_requests_min_response_time", "Fastest response (ms)", |e, _| e.min_us as f64 / 1000.0),
        ("locust_requests_max_response_time", "Slowest response (ms)", |e, _| e.max_us as f64 / 1000.0),
        ("locust_requests_median_response_time", "Median response time (ms)", |e, _| e.percentile_ms(0.5)),
        ("locust_requests_avg_content_length", "Mean body size (bytes)", |e, _| {
            e.content_bytes.checked_div(e.requests).unwrap_or(0) as f64
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
                figure(entry, current.as_ref())
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
        assert_eq!(render(None).lines().last(), Some("locust_running 0"));
    }
}
