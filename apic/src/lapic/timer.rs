//! The local APIC timer (SDM Vol. 3A §11.5.4): one-shot, periodic and TSC-deadline modes, the
//! divide configuration register and a current-count register that counts down with an injected
//! clock.
//!
//! Time is `now_ns`, nanoseconds on the caller's clock. The timer counts at
//! `bus_hz / divisor` ticks per second. The guest TSC is `now_ns * tsc_hz / 10^9`, so the
//! caller's clock origin must be the moment the guest TSC read 0 (KVM starts it at 0 when the
//! vCPU is created). All arithmetic is done in 128 bits and saturates: nothing a guest writes can
//! overflow or divide by zero.

use crate::regs::{LVT_TIMER_MODE, LVT_TIMER_PERIODIC, LVT_TIMER_TSC_DEADLINE};

const NS_PER_SEC: u128 = 1_000_000_000;

/// Timer mode, LVT timer bits 18:17 (§11.5.4, Figure 11-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerMode {
    /// 00: counts down once from the initial count and stops at 0.
    OneShot,
    /// 01: counts down and reloads the initial count at 0.
    Periodic,
    /// 10: fires when the TSC reaches `IA32_TSC_DEADLINE` (§11.5.4.1).
    TscDeadline,
    /// 11: reserved. The timer never fires in it and the current count reads 0.
    Reserved,
}

impl TimerMode {
    /// The mode selected by an LVT timer register value.
    pub fn from_lvt(lvt: u32) -> Self {
        match lvt & LVT_TIMER_MODE {
            0 => Self::OneShot,
            LVT_TIMER_PERIODIC => Self::Periodic,
            LVT_TIMER_TSC_DEADLINE => Self::TscDeadline,
            _ => Self::Reserved,
        }
    }
}

/// The divisor selected by a divide configuration register value (§11.5.4, Figure 11-10):
/// bits 3,1,0 = 000 -> 2, 001 -> 4, 010 -> 8, 011 -> 16, 100 -> 32, 101 -> 64, 110 -> 128,
/// 111 -> 1.
pub fn divisor(divide_config: u32) -> u64 {
    match ((divide_config >> 1) & 4) | (divide_config & 3) {
        7 => 1,
        n => 2u64 << n,
    }
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Timer state. The LVT timer register itself (mode, vector, mask) lives in the local APIC; every
/// method takes the current [`TimerMode`].
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    bus_hz: u64,
    tsc_hz: u64,
    /// Initial count register.
    initial: u32,
    /// Divide configuration register (bits 0, 1, 3).
    divide: u32,
    /// One-shot/periodic: counting down.
    running: bool,
    /// Start of the current countdown.
    start_ns: u64,
    /// Count at `start_ns` (the initial count, or the count when the divisor changed).
    start_count: u32,
    /// `IA32_TSC_DEADLINE`; 0 = disarmed.
    deadline: u64,
}

impl Timer {
    pub(crate) fn new(bus_hz: u64, tsc_hz: u64) -> Self {
        Self {
            bus_hz: bus_hz.max(1),
            tsc_hz: tsc_hz.max(1),
            initial: 0,
            divide: 0,
            running: false,
            start_ns: 0,
            start_count: 0,
            deadline: 0,
        }
    }

    /// Back to the reset state: counts, divide configuration and deadline zero (§11.4.7.1).
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.bus_hz, self.tsc_hz);
    }

    /// Disarms both kinds of timer: a switch between TSC-deadline mode and the other modes does
    /// this (§11.5.4.1).
    pub(crate) fn disarm(&mut self) {
        self.initial = 0;
        self.running = false;
        self.start_count = 0;
        self.deadline = 0;
    }

    /// Timer ticks in `ns` nanoseconds, rounded down.
    fn ns_to_ticks(&self, ns: u64) -> u64 {
        let den = NS_PER_SEC * u128::from(divisor(self.divide));
        saturate(u128::from(ns) * u128::from(self.bus_hz) / den)
    }

    /// Nanoseconds for `ticks` timer ticks, rounded up (at least 1 for a non-zero count).
    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let num = u128::from(ticks) * u128::from(divisor(self.divide)) * NS_PER_SEC;
        saturate(num.div_ceil(u128::from(self.bus_hz)))
    }

    /// The guest TSC at `now_ns`.
    pub(crate) fn tsc_at(&self, now_ns: u64) -> u64 {
        saturate(u128::from(now_ns) * u128::from(self.tsc_hz) / NS_PER_SEC)
    }

    /// The first `now_ns` at which the guest TSC is at least `tsc`.
    fn ns_at_tsc(&self, tsc: u64) -> u64 {
        saturate((u128::from(tsc) * NS_PER_SEC).div_ceil(u128::from(self.tsc_hz)))
    }

    /// Initial count register.
    pub(crate) fn initial(&self) -> u32 {
        self.initial
    }

    /// Divide configuration register.
    pub(crate) fn divide(&self) -> u32 {
        self.divide
    }

    /// `IA32_TSC_DEADLINE` as the guest reads it: 0 outside TSC-deadline mode.
    pub(crate) fn deadline(&self, mode: TimerMode) -> u64 {
        if mode == TimerMode::TscDeadline {
            self.deadline
        } else {
            0
        }
    }

    /// When the timer expires next, if it is armed.
    pub(crate) fn expiry_ns(&self, mode: TimerMode) -> Option<u64> {
        match mode {
            TimerMode::OneShot | TimerMode::Periodic if self.running => Some(
                self.start_ns
                    .saturating_add(self.ticks_to_ns(u64::from(self.start_count))),
            ),
            TimerMode::TscDeadline if self.deadline != 0 => Some(self.ns_at_tsc(self.deadline)),
            _ => None,
        }
    }

    /// Current count register at `now_ns` (0 when stopped, expired, or in TSC-deadline mode).
    pub(crate) fn current_count(&self, now_ns: u64, mode: TimerMode) -> u32 {
        match mode {
            TimerMode::OneShot | TimerMode::Periodic if self.running => {
                let ticks = self.ns_to_ticks(now_ns.saturating_sub(self.start_ns));
                u32::try_from(u64::from(self.start_count).saturating_sub(ticks)).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Initial count register write: (re)starts the countdown, or stops it with 0. Ignored in
    /// TSC-deadline mode (§11.5.4.1).
    pub(crate) fn set_initial(&mut self, now_ns: u64, value: u32, mode: TimerMode) {
        if mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = value;
        self.running = value != 0;
        self.start_ns = now_ns;
        self.start_count = value;
    }

    /// Divide configuration write. A running countdown keeps its current count and continues at
    /// the new rate from `now_ns`.
    pub(crate) fn set_divide(&mut self, now_ns: u64, value: u32, mode: TimerMode) {
        if self.running {
            let current = self.current_count(now_ns, mode);
            self.start_ns = now_ns;
            self.start_count = current;
        }
        self.divide = value & crate::regs::DIVIDE_WRITABLE;
    }

    /// `IA32_TSC_DEADLINE` write: arms the deadline (0 disarms). Ignored outside TSC-deadline
    /// mode (§11.5.4.1).
    pub(crate) fn set_deadline(&mut self, value: u64, mode: TimerMode) {
        if mode == TimerMode::TscDeadline {
            self.deadline = value;
        }
    }

    /// Advances to `now_ns`; returns whether the timer expired. A one-shot countdown stops, a
    /// periodic one reloads the initial count (several missed periods coalesce into one
    /// expiry, as they would in a single IRR bit), a TSC deadline is cleared.
    pub(crate) fn poll(&mut self, now_ns: u64, mode: TimerMode) -> bool {
        let Some(expiry) = self.expiry_ns(mode) else {
            return false;
        };
        if now_ns < expiry {
            return false;
        }
        match mode {
            TimerMode::Periodic if self.initial != 0 => {
                let period = self.ticks_to_ns(u64::from(self.initial)).max(1);
                let missed = (now_ns - expiry) / period;
                self.start_ns = expiry.saturating_add(missed.saturating_mul(period));
                self.start_count = self.initial;
            }
            TimerMode::TscDeadline => self.deadline = 0,
            _ => {
                self.running = false;
                self.start_count = 0;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHZ: u64 = 1_000_000_000;

    #[test]
    fn divide_configuration_encoding() {
        let expected = [
            (0, 2),
            (1, 4),
            (2, 8),
            (3, 16),
            (8, 32),
            (9, 64),
            (10, 128),
            (11, 1),
        ];
        for (config, div) in expected {
            assert_eq!(divisor(config), div, "config {config:#x}");
        }
        // Bit 2 and the high bits are not part of the encoding.
        assert_eq!(divisor(0b100), 2);
        assert_eq!(divisor(0xFFFF_FFF0), 2);
    }

    #[test]
    fn one_shot_counts_down_and_fires_once() {
        let mut t = Timer::new(GHZ, GHZ);
        t.set_divide(0, 0xB, TimerMode::OneShot); // divide by 1
        t.set_initial(100, 1000, TimerMode::OneShot);
        assert_eq!(t.current_count(100, TimerMode::OneShot), 1000);
        assert_eq!(t.current_count(600, TimerMode::OneShot), 500);
        assert_eq!(t.expiry_ns(TimerMode::OneShot), Some(1100));
        assert!(!t.poll(1099, TimerMode::OneShot));
        assert!(t.poll(1100, TimerMode::OneShot));
        assert_eq!(t.current_count(1100, TimerMode::OneShot), 0);
        assert!(!t.poll(5000, TimerMode::OneShot));
        assert_eq!(t.expiry_ns(TimerMode::OneShot), None);
        assert_eq!(t.initial(), 1000);
    }

    #[test]
    fn periodic_reloads_and_coalesces_missed_periods() {
        let mut t = Timer::new(GHZ, GHZ);
        t.set_divide(0, 0, TimerMode::Periodic); // divide by 2: 2 ns per tick
        t.set_initial(0, 50, TimerMode::Periodic); // 100 ns period
        assert!(t.poll(100, TimerMode::Periodic));
        assert_eq!(t.expiry_ns(TimerMode::Periodic), Some(200));
        assert_eq!(t.current_count(150, TimerMode::Periodic), 25);
        assert!(t.poll(1050, TimerMode::Periodic));
        assert_eq!(t.expiry_ns(TimerMode::Periodic), Some(1100));
        assert_eq!(t.current_count(1050, TimerMode::Periodic), 25);
    }

    #[test]
    fn divide_change_keeps_the_current_count() {
        let mut t = Timer::new(GHZ, GHZ);
        t.set_divide(0, 0xB, TimerMode::OneShot);
        t.set_initial(0, 1000, TimerMode::OneShot);
        t.set_divide(400, 0x3, TimerMode::OneShot); // divide by 16
        assert_eq!(t.current_count(400, TimerMode::OneShot), 600);
        assert_eq!(t.current_count(400 + 160, TimerMode::OneShot), 590);
        assert_eq!(t.expiry_ns(TimerMode::OneShot), Some(400 + 600 * 16));
    }

    #[test]
    fn tsc_deadline_fires_at_the_deadline_and_clears() {
        let mut t = Timer::new(GHZ, 3 * GHZ); // 3 TSC ticks per ns
        t.set_deadline(3000, TimerMode::OneShot);
        assert_eq!(
            t.deadline(TimerMode::TscDeadline),
            0,
            "ignored outside the mode"
        );
        t.set_deadline(3001, TimerMode::TscDeadline);
        assert_eq!(t.expiry_ns(TimerMode::TscDeadline), Some(1001));
        assert!(!t.poll(1000, TimerMode::TscDeadline));
        assert!(t.poll(1001, TimerMode::TscDeadline));
        assert_eq!(t.deadline(TimerMode::TscDeadline), 0);
        // Initial-count writes are ignored and the current count reads 0 in this mode.
        t.set_initial(0, 10, TimerMode::TscDeadline);
        assert_eq!(t.initial(), 0);
        assert_eq!(t.current_count(0, TimerMode::TscDeadline), 0);
    }

    #[test]
    fn extreme_values_saturate() {
        let mut t = Timer::new(1, u64::MAX);
        t.set_divide(0, 0xA, TimerMode::Periodic); // divide by 128
        t.set_initial(u64::MAX - 5, u32::MAX, TimerMode::Periodic);
        assert_eq!(t.expiry_ns(TimerMode::Periodic), Some(u64::MAX));
        assert!(t.poll(u64::MAX, TimerMode::Periodic));
        assert_eq!(t.tsc_at(u64::MAX), u64::MAX);
        let mut z = Timer::new(0, 0);
        z.set_initial(0, 1, TimerMode::OneShot);
        assert!(z.expiry_ns(TimerMode::OneShot).is_some());
        z.set_deadline(u64::MAX, TimerMode::TscDeadline);
        assert_eq!(z.expiry_ns(TimerMode::TscDeadline), Some(u64::MAX));
    }

    #[test]
    fn reserved_mode_never_fires() {
        let mut t = Timer::new(GHZ, GHZ);
        t.set_initial(0, 10, TimerMode::Reserved);
        assert_eq!(t.expiry_ns(TimerMode::Reserved), None);
        assert!(!t.poll(1 << 40, TimerMode::Reserved));
        assert_eq!(t.current_count(5, TimerMode::Reserved), 0);
        assert_eq!(TimerMode::from_lvt(3 << 17), TimerMode::Reserved);
    }
}
