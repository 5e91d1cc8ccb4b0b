//! Durations and time units of event time: nanoseconds shown in their largest whole unit
//! (`60s`, `5m`), and nanoseconds per unit of a timestamp column.

use std::fmt;

use datafusion::arrow::datatypes::TimeUnit;

/// A duration in nanoseconds, shown in the largest whole unit: `60s`, `5m`, `250ms`.
pub struct DisplayNanos(pub i64);

impl fmt::Display for DisplayNanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(i64, &str); 6] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        let nanos = self.0;
        for (unit, name) in UNITS {
            if nanos != 0 && nanos % unit == 0 {
                return write!(f, "{}{name}", nanos / unit);
            }
        }
        write!(f, "{nanos}ns")
    }
}

/// Nanoseconds per unit of a timestamp column.
pub fn nanos_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_their_largest_whole_unit() {
        assert_eq!(DisplayNanos(60_000_000_000).to_string(), "1m");
        assert_eq!(DisplayNanos(1_500_000_000).to_string(), "1500ms");
        assert_eq!(DisplayNanos(7).to_string(), "7ns");
    }
}
