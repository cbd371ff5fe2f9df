//! Text for humans: numbers, durations, times, and escaping for HTML, SVG and URLs.

/// Escapes text for HTML element content and quoted attributes (SVG included).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encodes one path segment of a relative link (a cell id or file name), so that `#`, `?`, `%` or a
/// space in a folder name cannot break the link.
pub fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A relative link from segments, each percent-encoded; `..` is kept as is.
pub fn href(segments: &[&str]) -> String {
    segments.iter().map(|s| if *s == ".." { s.to_string() } else { url_segment(s) }).collect::<Vec<_>>().join("/")
}

/// Below this magnitude a figure is floating-point dust (e.g. 7.6e-15 % failures, what `1 - ok / total` leaves):
/// it is read, compared and shown as zero. No metric of a cell is meaningful that small in its unit.
pub const DUST: f64 = 5e-7;

/// A figure with about three significant digits, thousands separated: 2,610 · 513 · 42.7 · 4.78 · 0.961.
pub fn fmt_num(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    let magnitude = value.abs();
    if magnitude < DUST {
        return "0".into();
    }
    let decimals = if magnitude == 0.0 || magnitude >= 100.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        // Three significant digits below one, at most six decimals.
        ((-magnitude.log10()).floor() as usize + 3).min(6)
    };
    group_thousands(&format!("{value:.decimals$}"))
}

/// A figure as short as it can be written, at most three decimals: 95 · 60 · 99.9 · 0.125.
pub fn fmt_plain(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    group_thousands(text)
}

/// A tick label: as many decimals as the tick step needs.
pub fn fmt_tick(value: f64, step: f64) -> String {
    let mut decimals = 0usize;
    let mut scaled = step.abs();
    while decimals < 6 && scaled > 0.0 && (scaled - scaled.round()).abs() > 1e-6 * scaled.max(1.0) {
        scaled *= 10.0;
        decimals += 1;
    }
    let value = if value.abs() < step.abs() * 1e-9 { 0.0 } else { value };
    group_thousands(&format!("{value:.decimals$}"))
}

fn group_thousands(text: &str) -> String {
    let (sign, rest) = text.strip_prefix('-').map_or(("", text), |r| ("-", r));
    let (whole, fraction) = rest.split_once('.').map_or((rest, None), |(w, f)| (w, Some(f)));
    if whole.len() <= 3 {
        return text.to_string();
    }
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A duration such as "2 h 05 min", "3 min 07 s" or "12.4 s".
pub fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".into();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 { format!("{h} h {m:02} min") } else { format!("{m} min {s:02} s") }
}

/// A UTC time, e.g. "2026-12-01 07:48:03 UTC".
pub fn fmt_time(unix_s: f64) -> String {
    if !unix_s.is_finite() || unix_s < 0.0 {
        return "—".into();
    }
    let (year, month, day, hour, minute, second) = load_agent::clock::utc_fields(unix_s as u64);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_table_in_a_paper() {
        assert_eq!(fmt_num(2610.36), "2,610");
        assert_eq!(fmt_num(513.1166), "513");
        assert_eq!(fmt_num(42.66), "42.7");
        assert_eq!(fmt_num(4.7778), "4.78");
        assert_eq!(fmt_num(0.96083), "0.961");
        assert_eq!(fmt_num(0.0012345), "0.00123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(-1234567.0), "-1,234,567");
        assert_eq!(fmt_num(f64::NAN), "—");
        assert_eq!(fmt_num(7.6e-15), "0");
        assert_eq!(fmt_plain(95.0), "95");
        assert_eq!(fmt_plain(99.9), "99.9");
        assert_eq!(fmt_plain(1500.0), "1,500");
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(1200.0, 200.0), "1,200");
        assert_eq!(fmt_tick(2.5, 2.5), "2.5");
    }

    #[test]
    fn escaping_covers_html_and_links() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(href(&["..", "cells", "a b#c?.html"]), "../cells/a%20b%23c%3F.html");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(fmt_duration(12.44), "12.4 s");
        assert_eq!(fmt_duration(187.0), "3 min 07 s");
        assert_eq!(fmt_duration(7500.0), "2 h 05 min");
        assert_eq!(fmt_time(0.0), "1970-01-01 00:00:00 UTC");
    }
}
