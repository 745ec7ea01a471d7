//! The guest clock the emulated APICs run on: nanoseconds since the guest TSC read 0.
//!
//! The APIC timer and TSC-deadline arithmetic take `now_ns`; TSC-deadline values are guest TSC
//! values, so the clock is anchored to the guest TSC once (read through `KVM_GET_MSRS`) and
//! advanced with the host's monotonic clock.

use std::time::Instant;

/// A monotonic clock anchored at the guest's TSC.
#[derive(Clone, Copy, Debug)]
pub struct GuestClock {
    base_ns: u64,
    base: Instant,
}

impl GuestClock {
    /// A clock that reads `guest_tsc` (at `tsc_hz`) now.
    pub fn anchored(guest_tsc: u64, tsc_hz: u64) -> Self {
        let base_ns = if tsc_hz == 0 {
            0
        } else {
            (u128::from(guest_tsc) * 1_000_000_000 / u128::from(tsc_hz)) as u64
        };
        GuestClock {
            base_ns,
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the guest TSC was 0.
    pub fn now_ns(&self) -> u64 {
        self.base_ns
            .saturating_add(self.base.elapsed().as_nanos() as u64)
    }

    /// How long from now until guest time `deadline_ns` (zero if it has passed).
    pub fn until(&self, deadline_ns: u64) -> std::time::Duration {
        std::time::Duration::from_nanos(deadline_ns.saturating_sub(self.now_ns()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_at_the_tsc() {
        let c = GuestClock::anchored(3_000_000_000, 1_500_000_000);
        let now = c.now_ns();
        assert!((2_000_000_000..2_100_000_000).contains(&now), "{now}");
        assert!(c.until(now + 1_000_000) <= std::time::Duration::from_millis(1));
        assert_eq!(c.until(0), std::time::Duration::ZERO);
    }
}
