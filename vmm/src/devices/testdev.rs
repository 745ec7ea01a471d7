//! The IRQ test device: lets a guest drive interrupt lines itself, so interrupt-controller
//! behaviour (edge vs level, remote IRR, re-delivery) can be tested from inside the guest.
//!
//! Modelled on QEMU's `pc-testdev` IRQ ports: a write of `v` to port `0x2000 + n`
//! (n < 24) sets ISA/IOAPIC line `n` to level `v != 0`. Reads return 0.

/// First port.
pub const TESTDEV_IRQ_BASE: u16 = 0x2000;
/// Number of lines (IOAPIC pins).
pub const TESTDEV_IRQ_LINES: u16 = 24;

/// Something that can set the level of an interrupt line (a GSI).
pub trait IrqLines: Send + Sync {
    /// Sets line `gsi` to `level`.
    fn set_level(&self, gsi: u32, level: bool) -> Result<(), String>;
}

/// KVM's in-kernel irqchip drives the lines through `KVM_IRQ_LINE`.
impl IrqLines for kvm_ioctls::VmFd {
    fn set_level(&self, gsi: u32, level: bool) -> Result<(), String> {
        self.set_irq_line(gsi, level)
            .map_err(|e| format!("KVM_IRQ_LINE gsi {gsi}: {e}"))
    }
}

/// The line a port addresses, if it belongs to the device.
pub fn line_of(port: u16) -> Option<u32> {
    port.checked_sub(TESTDEV_IRQ_BASE)
        .filter(|n| *n < TESTDEV_IRQ_LINES)
        .map(u32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_lines() {
        assert_eq!(line_of(0x2000), Some(0));
        assert_eq!(line_of(0x2017), Some(23));
        assert_eq!(line_of(0x2018), None);
        assert_eq!(line_of(0x1fff), None);
    }
}
