//! Text to epoch milliseconds: a fast path for ISO-8601 / RFC 3339 timestamps (the form
//! nearly every event carries), and RFC 2822 and the rarer ISO forms through chrono.

/// Milliseconds since the Unix epoch of a timestamp written as text, or `None` when the text
/// is not a time. A timestamp without an offset is read as UTC.
pub fn parse_epoch_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(millis) = parse_iso(text.as_bytes()) {
        return Some(millis);
    }
    parse_other(text)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH[:MM]|±HHMM]`, read by hand.
fn parse_iso(s: &[u8]) -> Option<i64> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = digits(&s[0..4])? as i64;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut millis = days_from_civil(year, month, day) * 86_400_000;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(millis);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let hour = digits(&rest[1..3])?;
    let minute = digits(&rest[4..6])?;
    if hour > 23 || minute > 59 {
        return None;
    }
    millis += (hour as i64 * 60 + minute as i64) * 60_000;
    let mut at = 6;
    if rest.get(at) == Some(&b':') {
        let second = digits(rest.get(at + 1..at + 3)?)?;
        if second > 59 {
            return None;
        }
        millis += second as i64 * 1000;
        at += 3;
        if matches!(rest.get(at), Some(b'.' | b',')) {
            at += 1;
            let start = at;
            let mut fraction_millis = 0;
            while let Some(c) = rest.get(at).filter(|c| c.is_ascii_digit()) {
                if at - start < 3 {
                    fraction_millis = fraction_millis * 10 + (c - b'0') as i64;
                }
                at += 1;
            }
            let written = at - start;
            if written == 0 {
                return None;
            }
            for _ in written..3 {
                fraction_millis *= 10;
            }
            millis += fraction_millis;
        }
    }
    let offset = &rest[at..];
    let offset_minutes = match offset {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2] => signed(*sign, digits(&[*h1, *h2])? * 60),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            signed(*sign, h * 60 + m)
        }
        _ => return None,
    };
    Some(millis - offset_minutes * 60_000)
}

fn signed(sign: u8, minutes: u32) -> i64 {
    if sign == b'-' {
        -(minutes as i64)
    } else {
        minutes as i64
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut value = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + (c - b'0') as u32;
    }
    Some(value)
}

/// The days of `month` (1 to 12) of `year` in the proleptic Gregorian calendar.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = month as i64;
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// RFC 2822 (`Tue, 1 Jul 2003 10:52:37 +0200`) and the ISO forms the fast path leaves out
/// (a week date, an ordinal date, a leap second), through chrono.
fn parse_other(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDateTime};
    if let Ok(time) = DateTime::parse_from_rfc2822(text) {
        return Some(time.timestamp_millis());
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y%m%dT%H%M%S%.fZ",
        "%Y%m%dT%H%M%SZ",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc().timestamp_millis());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse_epoch_millis;

    fn chrono_millis(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn iso_forms_agree_with_chrono() {
        for text in [
            "2024-02-29T23:59:59Z",
            "2024-02-29T23:59:59.123Z",
            "2024-02-29T23:59:59.1+02:00",
            "1969-12-31T23:59:59.999999999-05:30",
            "2000-01-01T00:00:00+00:00",
            "1900-03-01T12:00:00Z",
        ] {
            assert_eq!(
                parse_epoch_millis(text),
                Some(chrono_millis(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn shorter_iso_forms_read_as_utc() {
        assert_eq!(parse_epoch_millis("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_epoch_millis("1970-01-01 00:01"), Some(60_000));
        assert_eq!(parse_epoch_millis("1970-01-01T00:00:01.5"), Some(1_500));
        assert_eq!(parse_epoch_millis("1970-01-01T01:00:00+0100"), Some(0));
        assert_eq!(parse_epoch_millis("1970-01-01T01:00:00+01"), Some(0));
    }

    #[test]
    fn rfc_2822() {
        assert_eq!(
            parse_epoch_millis("Tue, 1 Jul 2003 10:52:37 +0200"),
            Some(chrono_millis("2003-07-01T10:52:37+02:00"))
        );
    }

    #[test]
    fn not_times() {
        for text in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01T24:00:00",
            "2024-01-01T10:00:00+",
            "2024-01-01T10:00:00.Z",
        ] {
            assert_eq!(parse_epoch_millis(text), None, "{text}");
        }
    }
}
