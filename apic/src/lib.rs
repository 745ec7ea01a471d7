//! Local APIC, I/O APIC and interrupt router for hvtrace's emulated irqchip, written as pure,
//! deterministic state machines after the Intel SDM Vol. 3A, chapter 11 "Advanced Programmable
//! Interrupt Controller (APIC)" (section numbers in the documentation refer to it).
//!
//! No KVM, no threads, no I/O: time is passed in by the caller as `now_ns` (nanoseconds on a
//! clock whose origin is the moment the guest TSC was 0), register accesses come in as offsets
//! and byte slices, and everything that must happen outside (inject an interrupt, kick a vCPU,
//! arm a host timer, inject #GP) is returned to the caller.
//!
//! - [`LocalApic`]: one local APIC, xAPIC MMIO and x2APIC MSR interfaces, `IA32_APIC_BASE` mode
//!   transitions, priorities, IRR/ISR/TMR, EOI, ESR, LVTs, timer, ICR, NMI, INIT/SIPI.
//! - [`IoApic`]: the 24-pin I/O APIC (version 0x20, with the EOI register).
//! - [`Router`]: all of them together; delivers IPIs, MSIs, IOAPIC messages and EOI broadcasts,
//!   and lists the vCPUs to kick.
//! - [`ApicEvent`]: every state change, for the tracer's `apic:::` provider.
//!
//! # Using it from a VMM
//!
//! The router is shared by the vCPU threads (behind a mutex); each call is short.
//!
//! ```
//! use apic::{ApicConfig, Router, Startup};
//!
//! let mut router = Router::new(&ApicConfig::default(), 2).unwrap();
//! let now_ns = 1_000;
//!
//! // An MMIO exit of vCPU 0 in its APIC page (the page can be relocated: ask the APIC).
//! let gpa = 0xFEE0_00F0; // SVR
//! if let Some(offset) = router.lapic(0).mmio_offset(gpa) {
//!     router.mmio_write(0, offset, &0x1FFu32.to_le_bytes(), now_ns); // software enable
//! }
//! router.mmio_write(1, 0xF0, &0x1FFu32.to_le_bytes(), now_ns);
//!
//! // vCPU 0 writes the ICR: a fixed IPI, vector 0x40, to APIC ID 1.
//! router.mmio_write(0, 0x310, &(1u32 << 24).to_le_bytes(), now_ns);
//! router.mmio_write(0, 0x300, &0x4040u32.to_le_bytes(), now_ns);
//! // The router does no I/O: the caller kicks the vCPUs it lists (immediate_exit + signal,
//! // or a condition variable for a halted one).
//! assert_eq!(router.take_kicks(), vec![1]);
//!
//! // vCPU 1, before KVM_RUN: mirror TPR into kvm_run.cr8, then inject if the guest can take an
//! // interrupt (RFLAGS.IF = 1, no interrupt shadow: the VMM's check, not the APIC's).
//! let _cr8 = router.lapic(1).cr8();
//! let guest_can_take_interrupt = true;
//! if guest_can_take_interrupt {
//!     if let Some(vector) = router.take_interrupt(1) {
//!         assert_eq!(vector, 0x40); // KVM_INTERRUPT with this vector
//!     }
//! }
//! // After an exit: kvm_run.cr8 back into the TPR.
//! router.lapic_mut(1).set_cr8(0);
//! // The guest's handler writes EOI (xAPIC offset 0xB0, or x2APIC MSR 0x80B).
//! router.mmio_write(1, 0xB0, &0u32.to_le_bytes(), now_ns);
//!
//! // On HLT: park until something can wake the vCPU.
//! let if_flag = true;
//! assert!(!router.lapic(1).wakeup_pending(if_flag));
//!
//! // x2APIC MSR exits (KVM_CAP_X86_USER_SPACE_MSR): Err(Gp) means inject #GP.
//! assert!(Router::handles_msr(0x802));
//! assert!(router.msr_read(0, 0x802, now_ns).is_err()); // not in x2APIC mode yet
//!
//! // Application processors wait in user space for INIT and SIPI.
//! router.mmio_write(0, 0x310, &(1u32 << 24).to_le_bytes(), now_ns);
//! router.mmio_write(0, 0x300, &0xC500u32.to_le_bytes(), now_ns); // INIT, level assert
//! router.mmio_write(0, 0x300, &0x0608u32.to_le_bytes(), now_ns); // SIPI, page 8
//! assert_eq!(router.lapic_mut(1).take_startup(), Some(Startup::Sipi(8))); // start at 0x8000
//!
//! // Timers: arm a host timer for the next deadline; when it fires, tick and kick.
//! if let Some(deadline) = router.next_deadline_ns() {
//!     let _next = router.tick(deadline);
//! }
//!
//! // Devices: IOAPIC lines and MSIs.
//! router.set_irq(4, true).unwrap();
//! router.msi(0xFEE0_1000, 0x0041).unwrap();
//! ```

mod error;
pub mod event;
pub mod ioapic;
pub mod lapic;
pub mod message;
pub mod regs;
pub mod router;
mod vecset;

#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

pub use error::{ConfigError, Gp, IoApicError, MsiError};
pub use event::{ApicEvent, EventLog, IpiDropReason, RejectReason};
pub use ioapic::{IoApic, IoApicMessage};
pub use lapic::{ApicConfig, ApicMode, Effect, LocalApic, Lvt, Startup, TimerMode};
pub use message::{DeliveryMode, DestMode, Ipi, Msi, Shorthand, Trigger};
pub use router::Router;
pub use vecset::VectorSet;
