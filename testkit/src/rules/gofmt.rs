//! How Go prints values inside kube-apiserver messages (`%q`, `%#v` of `[]byte`,
//! `time.Time.String()`, `time.Duration.String()`), so messages match byte for byte.

use time::OffsetDateTime;

/// Go's `%q` for a string: printable characters as they are, quotes, backslashes and control
/// characters escaped (strconv.Quote).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `[]byte`: `[]byte{0x30, 0x2a}`.
pub fn bytes(b: &[u8]) -> String {
    let inner = b
        .iter()
        .map(|x| format!("0x{x:x}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[]byte{{{inner}}}")
}

/// `time.Time.String()` for a UTC instant: `2026-11-25 10:00:00 +0000 UTC`.
pub fn time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.nanosecond() != 0 {
        let frac = format!("{:09}", t.nanosecond());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// `time.Duration.String()` for a whole number of seconds: `59m59s`, `24h0m1s`, `0s`.
pub fn duration_secs(total: i64) -> String {
    if total == 0 {
        return "0s".into();
    }
    let sign = if total < 0 { "-" } else { "" };
    let t = total.unsigned_abs();
    let (h, m, s) = (t / 3600, (t % 3600) / 60, t % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(bytes(&[0x30, 0x0a]), "[]byte{0x30, 0xa}");
        assert_eq!(duration_secs(3599), "59m59s");
        assert_eq!(duration_secs(86401), "24h0m1s");
        assert_eq!(duration_secs(5), "5s");
        let t = OffsetDateTime::from_unix_timestamp(1_795_600_800).unwrap();
        assert_eq!(time(t), "2026-11-25 10:00:00 +0000 UTC");
    }
}
