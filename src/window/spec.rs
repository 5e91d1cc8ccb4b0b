//! What a window is: its kind and sizes, and how a row's event time maps to windows.

use std::fmt;

use crate::stream::DisplayNanos;

/// A window kind with its sizes in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumble { size: i64 },
    /// Windows of `size` starting every `slide`; a row belongs to `size / slide` of them.
    Hop { slide: i64, size: i64 },
    /// Per key, rows closer than `gap` to each other form one window.
    Session { gap: i64 },
    /// Windows that all start where a `size` window starts and end every `step` until
    /// its end: a running aggregate of the `size` period, emitted each `step`.
    Cumulate { step: i64, size: i64 },
}

impl WindowKind {
    /// The SQL name of the table function.
    pub fn function_name(&self) -> &'static str {
        match self {
            Self::Tumble { .. } => "TUMBLE",
            Self::Hop { .. } => "HOP",
            Self::Session { .. } => "SESSION",
            Self::Cumulate { .. } => "CUMULATE",
        }
    }

    /// The most windows the rows of one pane (or step) belong to; none for sessions.
    pub fn windows_per_pane(&self) -> usize {
        match *self {
            Self::Tumble { .. } => 1,
            Self::Hop { slide, size } => (size / slide) as usize,
            Self::Cumulate { step, size } => (size / step) as usize,
            Self::Session { .. } => 0,
        }
    }

    /// The end of the latest window a row at `ts` belongs to; once the watermark passes it
    /// (plus the allowed lateness) the row can no longer be counted anywhere.
    pub fn latest_end(&self, ts: i64) -> i64 {
        match *self {
            Self::Tumble { size } => floor(ts, size).saturating_add(size),
            Self::Hop { slide, size } => floor(ts, slide).saturating_add(size),
            Self::Session { gap } => ts.saturating_add(gap),
            Self::Cumulate { size, .. } => floor(ts, size).saturating_add(size),
        }
    }
}

/// The largest multiple of `step` at or below `ts` (windows align to the epoch).
pub fn floor(ts: i64, step: i64) -> i64 {
    ts.saturating_sub(ts.rem_euclid(step))
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Tumble { size } => write!(f, "tumble={}", DisplayNanos(size)),
            Self::Hop { slide, size } => {
                write!(f, "hop={}/{}", DisplayNanos(slide), DisplayNanos(size))
            }
            Self::Session { gap } => write!(f, "session_gap={}", DisplayNanos(gap)),
            Self::Cumulate { step, size } => {
                write!(f, "cumulate={}/{}", DisplayNanos(step), DisplayNanos(size))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch_also_before_it() {
        assert_eq!(floor(125, 60), 120);
        assert_eq!(floor(-5, 60), -60);
        assert_eq!(WindowKind::Tumble { size: 60 }.latest_end(125), 180);
        assert_eq!(
            WindowKind::Hop {
                slide: 10,
                size: 60
            }
            .latest_end(125),
            180
        );
        assert_eq!(WindowKind::Session { gap: 30 }.latest_end(125), 155);
    }

    #[test]
    fn displays_sizes_in_whole_units() {
        assert_eq!(
            WindowKind::Tumble {
                size: 60_000_000_000
            }
            .to_string(),
            "tumble=1m"
        );
        assert_eq!(
            WindowKind::Hop {
                slide: 10_000_000_000,
                size: 60_000_000_000
            }
            .to_string(),
            "hop=10s/1m"
        );
    }
}
