//! The hvtrace virtual machine monitor: guest memory, image loading, boot state, MP tables,
//! devices, irqchip selection, the exit dispatcher and the run loop of a whole VM.
//!
//! The `hvtrace` binary (`src/main.rs`) is a thin layer over [`vm::Vm`].

pub mod acpi;
pub mod boot;
pub mod boot32;
pub mod cli;
pub mod compare;
pub mod console;
pub mod control;
pub mod cpuid;
pub mod devices;
pub mod disasm;
pub mod dispatch;
pub mod error;
pub mod host_int3;
pub mod host_lzcnt;
pub mod host_traps;
pub mod irqchip;
pub mod kaslr;
pub mod layout;
pub mod loader;
pub mod mptable;
pub mod outcome;
pub mod probes;
pub mod qemu;
pub mod timeline;
pub mod trace;
pub mod vm;

pub use error::VmmError;
pub use irqchip::IrqChipMode;
pub use outcome::{EndHandle, Outcome};
pub use vm::{Image, Vm, VmConfig};
