//! Jittered exponential backoff for every retry the daemon makes (connect,
//! UpdateJob, FinishJob).

use std::time::Duration;

use rand::Rng;

const START: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_secs(10);

/// Delays that double from 100 ms up to 10 s. Each delay is drawn from the
/// upper half of its step, so a fleet of daemons that lost the coordinator
/// at the same moment does not reconnect in lockstep, yet no retry comes
/// sooner than half the step.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    step: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff { step: START }
    }

    /// The delay before the next attempt; each call lengthens the next one.
    pub(super) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(CAP);
        rand::rng().random_range(step / 2..=step)
    }

    /// Back to the shortest delay, after an attempt succeeded.
    pub(super) fn reset(&mut self) {
        self.step = START;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new();
        let mut step = START;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} outside {step:?}");
            step = (step * 2).min(CAP);
        }
        assert!(b.next_delay() >= CAP / 2);
        b.reset();
        assert!(b.next_delay() <= START);
    }
}
