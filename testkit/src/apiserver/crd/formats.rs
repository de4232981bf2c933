//! The string formats apiextensions-apiserver validates (kube-openapi strfmt, after
//! StripUnsupportedFormatsPostProcess). Formats not listed here are accepted unchecked.

use base64::Engine;
use std::net::IpAddr;

/// Whether `format` is checked here, and if so whether `s` satisfies it.
pub fn check(format: &str, s: &str) -> Option<bool> {
    // strfmt normalises names by dropping '-' ("date-time" is "datetime").
    let ok = match format.replace('-', "").as_str() {
        "datetime" => is_date_time(s),
        "date" => is_date(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uuid" => is_uuid(s, None),
        "uuid3" => is_uuid(s, Some('3')),
        "uuid4" => is_uuid(s, Some('4')),
        "uuid5" => is_uuid(s, Some('5')),
        "ipv4" => s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()),
        "ipv6" => s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()),
        "cidr" => is_cidr(s),
        _ => return None,
    };
    Some(ok)
}

/// strfmt.IsDate: `time.Parse("2006-01-02", s)`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    if !b[..4]
        .iter()
        .chain(&b[5..7])
        .chain(&b[8..])
        .all(u8::is_ascii_digit)
    {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// strfmt.IsDateTime: a date, 't' (any case), then `hh:mm:ss(.frac)?(z|±hh:mm)`.
fn is_date_time(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if s.len() < 4 || !is_date(date) {
        return false;
    }
    let b = time.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let two = |i: usize| -> Option<u32> {
        let d = b.get(i..i + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    };
    let (Some(h), Some(m), Some(sec)) = (two(0), two(3), two(6)) else {
        return false;
    };
    let Some(mut rest) = time.get(8..) else {
        return false;
    };
    // The fraction is `.[0-9]+` where `.` is any character, as in the upstream regexp.
    if let Some(first) = rest
        .chars()
        .next()
        .filter(|c| !matches!(c, 'z' | '+' | '-'))
    {
        let after = &rest[first.len_utf8()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &after[digits..];
    }
    let zb = rest.as_bytes();
    let zone_ok = rest == "z"
        || (zb.len() == 6
            && matches!(zb[0], b'+' | b'-')
            && zb[3] == b':'
            && [zb[1], zb[2], zb[4], zb[5]].iter().all(u8::is_ascii_digit));
    zone_ok && h <= 23 && m <= 59 && sec <= 59
}

fn is_uuid(s: &str, version: Option<char>) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let shape_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit()));
    shape_ok && version.is_none_or(|v| groups[2].starts_with(v))
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.bytes().all(|c| c.is_ascii_digit())
        && bits.parse::<u32>().is_ok_and(|n| n <= max)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn date_times_follow_strfmt() {
        assert_eq!(check("date-time", "2026-01-02T03:04:05Z"), Some(true));
        assert_eq!(
            check("date-time", "2026-01-02t03:04:05.123+01:00"),
            Some(true)
        );
        assert_eq!(check("date-time", "2026-01-02 03:04:05Z"), Some(false));
        assert_eq!(check("date-time", "2026-02-30T03:04:05Z"), Some(false));
        assert_eq!(check("date-time", "2026-01-02T24:04:05Z"), Some(false));
        assert_eq!(check("date-time", "yesterday"), Some(false));
        assert_eq!(check("date-time", "2026-01-02T03:04:05é1z"), Some(true));
        assert_eq!(check("date-time", "2026-01-02T03:04:05é"), Some(false));
        assert_eq!(check("date-time", "2026-01-02T03:04:05+é:00"), Some(false));
    }

    #[test]
    fn other_formats() {
        assert_eq!(check("date", "2024-02-29"), Some(true));
        assert_eq!(check("date", "2023-02-29"), Some(false));
        assert_eq!(check("byte", "aGk="), Some(true));
        assert_eq!(check("byte", "not base64!"), Some(false));
        assert_eq!(
            check("uuid4", "6ba7b810-9dad-41d1-80b4-00c04fd430c8"),
            Some(true)
        );
        assert_eq!(
            check("uuid4", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            Some(false)
        );
        assert_eq!(check("ipv4", "10.0.0.1"), Some(true));
        assert_eq!(check("ipv4", "::1"), Some(false));
        assert_eq!(check("ipv6", "::1"), Some(true));
        assert_eq!(check("cidr", "10.0.0.0/8"), Some(true));
        assert_eq!(check("cidr", "10.0.0.0/33"), Some(false));
        assert_eq!(check("int32", "x"), None);
        assert_eq!(check("email", "x"), None);
    }
}
