//! The control plane's clock: milliseconds since the Unix epoch, so deadlines persist across restarts.
//!
//! Everything that decides takes a `galleon_core::time::Time` from here; nothing below reads a clock.

use galleon_core::time::Time;

pub fn now() -> Time {
    Time::from_millis(u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0))
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// RFC 3339 with second precision, as ARM prints times: `2026-11-23T10:00:00Z`.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

pub fn now_rfc3339() -> String {
    rfc3339(now_ms())
}
