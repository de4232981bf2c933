//! Durations as people write them in flags and objects.

/// Parses a duration such as `24h`, `90m`, `3600s` or `365d`.
pub fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 90m, 24h, 365d)"))?;
    time::Duration::try_from(d).map_err(|e| format!("duration {s:?} out of range: {e}"))
}
