//! ISO-8601 timestamps read straight from their bytes: `2026-01-31T09:26:56.123456789Z`,
//! with `T`, `t` or a space between date and time, up to nine fraction digits, and an
//! optional `Z`. That is the shape event producers write, and parsing it takes a few
//! comparisons and one days-from-date formula. Every other form (an offset, a date alone,
//! a leap second) is left to Arrow's own parser, whose meaning this matches exactly.

use datafusion::arrow::datatypes::TimeUnit;
use profusion_udfs::normalize::civil_time::{days_from_civil, days_in_month};

const SECONDS_PER_DAY: i64 = 86_400;

/// The instant `text` names, as whole seconds since the epoch and nanoseconds past them;
/// `None` if `text` is not of the form this reads or names no valid date and time.
#[inline]
pub fn iso_instant(text: &[u8]) -> Option<(i64, u32)> {
    let (head, rest) = text.split_first_chunk::<19>()?;
    let field = |at: usize, len: usize| -> Option<u32> {
        head[at..at + len].iter().try_fold(0u32, |value, &byte| {
            let digit = byte.wrapping_sub(b'0');
            (digit < 10).then_some(value * 10 + digit as u32)
        })
    };
    let separated = head[4] == b'-'
        && head[7] == b'-'
        && matches!(head[10], b'T' | b't' | b' ')
        && head[13] == b':'
        && head[16] == b':';
    if !separated {
        return None;
    }
    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, minute, second) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year as i64, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let nanos = fraction_then_zone(rest)?;
    let days = days_from_civil(year as i64, month, day);
    let seconds = days * SECONDS_PER_DAY + (hour * 3600 + minute * 60 + second) as i64;
    Some((seconds, nanos))
}

/// The value of an instant in `unit` since the epoch, as Arrow's parser gives it
/// (seconds, milliseconds and microseconds round down); `None` if it does not fit.
#[inline]
pub fn in_unit((seconds, nanos): (i64, u32), unit: TimeUnit) -> Option<i64> {
    let (per_second, nanos_per_tick) = match unit {
        TimeUnit::Second => return Some(seconds),
        TimeUnit::Millisecond => (1_000, 1_000_000),
        TimeUnit::Microsecond => (1_000_000, 1_000),
        TimeUnit::Nanosecond => (1_000_000_000, 1),
    };
    seconds
        .checked_mul(per_second)?
        .checked_add((nanos / nanos_per_tick) as i64)
}

/// The nanoseconds of an optional `.fraction` (one to nine digits) followed by an optional
/// `Z` and nothing else.
#[inline]
fn fraction_then_zone(rest: &[u8]) -> Option<u32> {
    let (nanos, rest) = match rest.split_first() {
        Some((b'.', digits)) => {
            let count = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            if count == 0 || count > 9 {
                return None;
            }
            let value = digits[..count]
                .iter()
                .fold(0u32, |value, &byte| value * 10 + (byte - b'0') as u32);
            (value * 10u32.pow(9 - count as u32), &digits[count..])
        }
        _ => (0, rest),
    };
    match rest {
        [] | [b'Z' | b'z'] => Some(nanos),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::timezone::Tz;
    use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    /// What Arrow's parser makes of `text`, read as UTC when it names no zone.
    fn arrow(text: &str) -> Option<(i64, u32)> {
        let utc: Tz = "+00:00".parse().unwrap();
        let date = string_to_datetime(&utc, text).ok()?;
        Some((date.timestamp(), date.timestamp_subsec_nanos()))
    }

    #[test]
    fn the_usual_forms_read_as_arrow_reads_them() {
        for text in [
            "2026-01-31T09:26:56.123456789Z",
            "2026-01-31T09:26:56.123456789",
            "2026-01-31 09:26:56.1",
            "2026-01-31t09:26:56.000001z",
            "2024-02-29T23:59:59",
            "2000-02-29T00:00:00Z",
            "1970-01-01T00:00:00",
            "1969-12-31T23:59:59.999999999",
            "1677-09-21T00:12:44Z",
            "2262-04-11T23:47:16.854775807",
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59.9",
        ] {
            assert_eq!(iso_instant(text.as_bytes()), arrow(text), "{text}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_matches_arrow_and_impossible_days_are_none() {
        for year in 1899..2301 {
            for month in 1..=12 {
                for day in 1..=31 {
                    let text = format!("{year:04}-{month:02}-{day:02}T13:14:15.5");
                    let ours = iso_instant(text.as_bytes());
                    assert_eq!(ours, arrow(&text), "{text}");
                }
            }
        }
    }

    #[test]
    fn other_forms_and_impossible_dates_are_left_to_arrow() {
        for text in [
            "2026-01-31T09:26:56+02:00",
            "2026-01-31T09:26:56.123 -08",
            "2026-01-31",
            "2026-01-31T09:26",
            "2026-01-31T09:26:56.",
            "2026-01-31T09:26:56.1234567891",
            "2026-01-31T09:26:56Zz",
            "2026-02-29T00:00:00",
            "1900-02-29T00:00:00",
            "2026-13-01T00:00:00",
            "2026-00-01T00:00:00",
            "2026-01-00T00:00:00",
            "2026-01-31T24:00:00",
            "2026-01-31T23:60:00",
            "2026-01-31T23:59:60",
            "2026/01/31T09:26:56",
            "+2026-01-31T09:26:5",
            "２026-01-31T09:26:56",
        ] {
            assert_eq!(iso_instant(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn units_round_down_and_overflow_is_none() {
        let before_epoch = iso_instant(b"1969-12-31T23:59:59.9995").unwrap();
        assert_eq!(in_unit(before_epoch, TimeUnit::Second), Some(-1));
        assert_eq!(in_unit(before_epoch, TimeUnit::Millisecond), Some(-1));
        assert_eq!(in_unit(before_epoch, TimeUnit::Microsecond), Some(-500));
        assert_eq!(in_unit(before_epoch, TimeUnit::Nanosecond), Some(-500_000));
        let far = iso_instant(b"2263-01-01T00:00:00").unwrap();
        assert_eq!(in_unit(far, TimeUnit::Nanosecond), None);
        assert!(in_unit(far, TimeUnit::Microsecond).is_some());
    }
}
