//! Go's duration strings (`300ms`, `5s`, `1h30m`, `1.5m`), which Packer uses for `pause_before`,
//! `pause_after` and `timeout`.
//!
//! Owns parsing and printing them. Does not sleep or measure time.

use std::time::Duration;

/// Parses a Go `time.ParseDuration` string. Negative durations are refused: none of Packer's keys means
/// anything by them.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)");
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Prints a duration the way Go does for the common cases (`1m30s`, `250ms`), for messages.
pub(crate) fn display(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = d.subsec_millis();
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac > 0 {
        out.push_str(&format!("{s}.{frac:03}s"));
    } else {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn parses_go_durations() {
        let cases = ["0", "5s", "300ms", "1h30m", "1.5m", "2h0m3s", "10us", "", "5", "-1s", "5 minutes", "1d", "."];
        let got: Vec<String> = cases
            .iter()
            .map(|c| match parse(c) {
                Ok(d) => format!("{c:?} -> {}", display(d)),
                Err(e) => format!("{c:?} -> error: {e}"),
            })
            .collect();
        expect![[r#"
            "0" -> 0ms
            "5s" -> 5s
            "300ms" -> 300ms
            "1h30m" -> 1h30m0s
            "1.5m" -> 1m30s
            "2h0m3s" -> 2h0m3s
            "10us" -> 0ms
            "" -> error: "" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
            "5" -> error: "5" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
            "-1s" -> error: "-1s" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
            "5 minutes" -> error: "5 minutes" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
            "1d" -> error: "1d" is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
            "." -> error: "." is not a duration (use Go's form, e.g. 30s, 5m, 1h30m, 500ms)
        "#]]
        .assert_eq(&(got.join("\n") + "\n"));
    }
}
