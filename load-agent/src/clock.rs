//! UTC calendar time from Unix seconds, for timestamps in file names and CSV rows (no time-zone database needed).

/// The UTC calendar fields (year, month, day, hour, minute, second) of a Unix time.
pub fn utc_fields(unix_s: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, rest) = ((unix_s / 86_400) as i64, (unix_s % 86_400) as u32);
    // Civil date from days since 1970-01-01 in the proleptic Gregorian calendar (eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + (month <= 2) as i64;
    (year, month, day, rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `2023-11-14T22:13:20Z`, as Locust writes timestamps.
pub fn iso8601(unix_s: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_fields(unix_s);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20231114-221320`, for run folder names.
pub fn compact(unix_s: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_fields(unix_s);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// Seconds since the Unix epoch, now.
pub fn now_unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(compact(1_700_000_000), "20231114-221320");
    }
}
