//! A circuit breaker for one `enrich_http` endpoint. After `failures` keys in a row whose
//! every attempt failed, the endpoint is left alone for `cool_down`: keys are answered from
//! the cache (even an expired answer) or NULL, at once. Then one key probes it; a success
//! closes the breaker, a failure opens it for another cool-down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// May a key call the endpoint now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes: the endpoint is healthy.
    Call,
    /// Yes, alone: the cool-down is over and this key tries the endpoint again.
    Probe,
    /// No: the breaker is open.
    Refuse,
}

/// The breaker's state.
#[derive(Debug)]
pub struct CircuitBreaker {
    failures: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Keys in a row whose every attempt failed.
    consecutive: u32,
    /// Until when calls are refused, once open.
    open_until: Option<Instant>,
    /// A probe is out.
    probing: bool,
}

impl CircuitBreaker {
    /// Opens after `failures` failed keys in a row (0: never), for `cool_down`.
    pub fn new(failures: u32, cool_down: Duration) -> Self {
        Self {
            failures,
            cool_down,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a key may call the endpoint at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state();
        match state.open_until {
            None => Admission::Call,
            Some(until) if now < until || state.probing => Admission::Refuse,
            Some(_) => {
                state.probing = true;
                Admission::Probe
            }
        }
    }

    /// A key got its answer: the endpoint works.
    pub fn succeeded(&self) {
        *self.state() = State::default();
    }

    /// Every attempt for a key failed at `now`.
    pub fn failed(&self, now: Instant) {
        if self.failures == 0 {
            return;
        }
        let mut state = self.state();
        state.consecutive += 1;
        if state.probing || state.consecutive >= self.failures {
            state.open_until = Some(now + self.cool_down);
            state.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_then_probes_once_the_cool_down_is_over() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.admit(t0), Admission::Call);
            breaker.failed(t0);
        }
        breaker.succeeded();
        for _ in 0..3 {
            assert_eq!(breaker.admit(t0), Admission::Call);
            breaker.failed(t0);
        }
        assert_eq!(breaker.admit(t0), Admission::Refuse);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(breaker.admit(later), Admission::Probe);
        // One probe at a time.
        assert_eq!(breaker.admit(later), Admission::Refuse);
        breaker.failed(later);
        assert_eq!(
            breaker.admit(later + Duration::from_secs(1)),
            Admission::Refuse
        );
        let again = later + Duration::from_secs(11);
        assert_eq!(breaker.admit(again), Admission::Probe);
        breaker.succeeded();
        assert_eq!(breaker.admit(again), Admission::Call);
    }

    #[test]
    fn zero_failures_never_opens() {
        let breaker = CircuitBreaker::new(0, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..100 {
            breaker.failed(now);
        }
        assert_eq!(breaker.admit(now), Admission::Call);
    }
}
