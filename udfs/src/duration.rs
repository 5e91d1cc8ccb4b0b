//! Durations as users write them in options and function arguments: `'5 seconds'`,
//! `'500ms'`, `'1 minute'`, `'2h'`, or a plain number of milliseconds. Shared with
//! profusion's `WITH` options, so both read a duration the same way.

use std::time::Duration;

/// Parses a duration made of one or more `<number> <unit>` parts.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(millis) = text.parse::<u64>() {
        return Ok(Duration::from_millis(millis));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("expected a number at '{rest}'"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("bad number '{}'", &rest[..number_len]))?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let seconds = unit_seconds(unit)
            .ok_or_else(|| format!("unknown unit '{unit}' (use ms, s, min, h or d)"))?;
        let part = Duration::try_from_secs_f64(number * seconds)
            .map_err(|_| format!("'{text}' is longer than a duration can be"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("'{text}' is longer than a duration can be"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "us" | "micros" | "microsecond" | "microseconds" => 1e-6,
        "ms" | "millis" | "millisecond" | "milliseconds" => 1e-3,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!(parse_duration("5 seconds"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1 minute"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("99999999999999999999999d").is_err());
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn rejects_unknown_units() {
        assert!(
            parse_duration("5 fortnights")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("soon").is_err());
    }
}
