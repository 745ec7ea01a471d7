//! The debug-exit port: how a guest ends the VM with a status.
//!
//! A write of value `v` (any width) at port [`DEBUG_EXIT_PORT`] ends the VM. What `hvtrace
//! run` then exits with depends on the guest's boot protocol ([`ExitConvention`]):
//! - hvtrace's own 64-bit guests: `v & 0xff`, the value itself;
//! - multiboot kernels: `((v << 1) | 1) & 0xff`, as QEMU's `isa-debug-exit` reports it, so that
//!   test suites written for QEMU keep their exit codes. Such kernels may also use QEMU's
//!   default `isa-debug-exit` port [`QEMU_DEFAULT_EXIT_PORT`] (0x501) instead of 0xf4.

/// The port number.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// QEMU's default `isa-debug-exit` port (`iobase=0x501`), honoured for multiboot kernels.
pub const QEMU_DEFAULT_EXIT_PORT: u16 = 0x501;

/// How a written value becomes an exit status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitConvention {
    /// hvtrace's own: the low byte of the value.
    #[default]
    Value,
    /// QEMU's `isa-debug-exit`: `(v << 1) | 1`, low byte.
    Qemu,
}

/// The device: decodes a write into an exit status.
#[derive(Debug, Default)]
pub struct DebugExit {
    /// The convention of this VM's guest.
    pub convention: ExitConvention,
}

impl DebugExit {
    /// Whether a write to `port` ends the VM.
    pub fn handles(&self, port: u16) -> bool {
        port == DEBUG_EXIT_PORT
            || (self.convention == ExitConvention::Qemu && port == QEMU_DEFAULT_EXIT_PORT)
    }

    /// The exit status a write of `data` (little-endian, 1-4 bytes) requests.
    pub fn status(&self, data: &[u8]) -> u8 {
        let v = data.first().copied().unwrap_or(0);
        match self.convention {
            ExitConvention::Value => v,
            ExitConvention::Qemu => (v << 1) | 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_low_byte() {
        let d = DebugExit::default();
        assert_eq!(d.status(&[3]), 3);
        assert_eq!(d.status(&[0x01, 0x02, 0, 0]), 1);
        assert_eq!(d.status(&[]), 0);
        assert!(d.handles(0xf4) && !d.handles(0x501));
    }

    #[test]
    fn qemu_convention_doubles_and_sets_bit_0() {
        let d = DebugExit {
            convention: ExitConvention::Qemu,
        };
        assert_eq!(d.status(&[0]), 1);
        assert_eq!(d.status(&[5, 0, 0, 0]), 11);
        assert_eq!(
            d.status(&[0x80]),
            1,
            "the high bit falls off, as in an 8-bit status"
        );
        assert!(d.handles(0xf4) && d.handles(0x501));
    }
}
