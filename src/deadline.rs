//! Deadlines from durations a caller or an operator chose: `now + d` that cannot overflow.

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: "never", for a deadline whose duration does not fit in an [`Instant`].
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `d` from now; a `d` too long for an [`Instant`] (`Duration::MAX`, say) is about thirty
/// years, never a panic.
pub(crate) fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or(now + FAR_FUTURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn durations_too_long_for_an_instant_are_far_not_a_panic() {
        assert!(after(Duration::MAX) > Instant::now() + Duration::from_secs(86_400 * 365));
        let soon = after(Duration::from_secs(1));
        assert!(soon <= Instant::now() + Duration::from_secs(1));
    }
}
