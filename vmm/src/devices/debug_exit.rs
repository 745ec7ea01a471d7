//! The debug-exit port: how a guest ends the VM with a status.
//!
//! A write of value `v` (any width) at port [`DEBUG_EXIT_PORT`] ends the VM and `hvtrace run`
//! exits with status `v & 0xff`. QEMU's `isa-debug-exit` device reports `(v << 1) | 1` instead;
//! hvtrace reports the value itself.

/// The port number.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The device: decodes a write into an exit status.
#[derive(Debug, Default)]
pub struct DebugExit;

impl DebugExit {
    /// The exit status a write of `data` (little-endian, 1-4 bytes) requests.
    pub fn status(&self, data: &[u8]) -> u8 {
        data.first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_low_byte() {
        assert_eq!(DebugExit.status(&[3]), 3);
        assert_eq!(DebugExit.status(&[0x01, 0x02, 0, 0]), 1);
        assert_eq!(DebugExit.status(&[]), 0);
    }
}
