//! Port-I/O devices and their bus.
//!
//! | ports | device |
//! |---|---|
//! | 0x3f8-0x3ff | 16550 UART (COM1), output to stdout |
//! | 0xf4 | debug-exit port: a write of `v` ends the VM with exit status `v & 0xff` (multiboot kernels: `(v << 1) \| 1` as QEMU's `isa-debug-exit`, also at 0x501) |
//! | 0xcf8-0xcff | PCI configuration mechanism #1: bus 0 with only a host bridge (`pci`) |
//! | 0x2000-0x2017 | IRQ test device: a write of `v` to `0x2000 + n` sets line `n` to `v != 0` |
//!
//! Other ports read as all ones and ignore writes, as an empty ISA bus does.

pub mod debug_exit;
pub mod pci;
pub mod serial;
pub mod testdev;

pub use debug_exit::{DebugExit, ExitConvention, DEBUG_EXIT_PORT, QEMU_DEFAULT_EXIT_PORT};
pub use pci::PciBus;
pub use serial::{MemoryOutput, SerialPort, COM1_BASE, COM1_LEN};
