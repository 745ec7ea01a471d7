//! The user-space IOAPIC of `--irqchip split`: KVM keeps the local APICs, hvtrace emulates the
//! IOAPIC (the `apic` crate's `IoApic`) and delivers its messages as MSIs (`KVM_SIGNAL_MSI`).
//!
//! For level-triggered pins KVM must tell user space when the guest EOIs their vector
//! (`KVM_EXIT_IOAPIC_EOI`). KVM decides which vectors exit from the GSI routing table, so every
//! change to the redirection table is mirrored into MSI routes for GSIs 0-23 (what QEMU does
//! for its split-irqchip IOAPIC).

use std::sync::{Arc, Mutex, MutexGuard};

use apic::{IoApic, IoApicMessage, Msi};
use kvm_bindings::{kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::VmFd;

use super::IOAPIC_PINS;
use crate::devices::testdev::IrqLines;
use crate::layout::IOAPIC_BASE;

/// Redirection entry bit 16: masked.
const REDIR_MASKED: u64 = 1 << 16;

/// The IOAPIC of a split-irqchip VM.
pub struct SplitIoapic {
    ioapic: Mutex<IoApic>,
    vm: Arc<VmFd>,
}

impl SplitIoapic {
    /// An IOAPIC in its reset state, delivering through `vm`.
    pub fn new(vm: Arc<VmFd>) -> Arc<Self> {
        Arc::new(SplitIoapic {
            ioapic: Mutex::new(IoApic::new()),
            vm,
        })
    }

    fn lock(&self) -> MutexGuard<'_, IoApic> {
        self.ioapic.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles an MMIO access if `gpa` is in the IOAPIC page; returns whether it was.
    pub fn mmio(&self, gpa: u64, data: &mut [u8], write: bool) -> Result<bool, String> {
        let Some(offset) = gpa.checked_sub(IOAPIC_BASE).filter(|o| *o < 0x1000) else {
            return Ok(false);
        };
        let mut out = Vec::new();
        let routes = {
            let mut ioapic = self.lock();
            if write {
                ioapic.mmio_write(offset, data, &mut out);
                Some(routes_of(&ioapic))
            } else {
                ioapic.mmio_read(offset, data);
                None
            }
        };
        if let Some(routes) = routes {
            self.set_routes(&routes)?;
        }
        self.deliver(&out)?;
        Ok(true)
    }

    /// The guest EOI'd a level-triggered `vector` (`KVM_EXIT_IOAPIC_EOI`).
    pub fn eoi(&self, vector: u8) -> Result<(), String> {
        let mut out = Vec::new();
        self.lock().eoi(vector, &mut out);
        self.deliver(&out)
    }

    fn deliver(&self, messages: &[IoApicMessage]) -> Result<(), String> {
        for m in messages {
            let msi = to_msi(m);
            let raw = kvm_msi {
                address_lo: msi.address() as u32,
                address_hi: (msi.address() >> 32) as u32,
                data: msi.data(),
                ..Default::default()
            };
            self.vm
                .signal_msi(raw)
                .map_err(|e| format!("KVM_SIGNAL_MSI for IOAPIC pin {}: {e}", m.pin))?;
        }
        Ok(())
    }

    fn set_routes(&self, routes: &[kvm_irq_routing_entry]) -> Result<(), String> {
        let table = KvmIrqRouting::from_entries(routes)
            .map_err(|e| format!("IOAPIC routing table: {e:?}"))?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(|e| format!("KVM_SET_GSI_ROUTING: {e}"))
    }
}

/// The MSI an IOAPIC message is delivered as.
fn to_msi(m: &IoApicMessage) -> Msi {
    Msi {
        dest: m.dest,
        dest_mode: m.dest_mode,
        redirection_hint: false,
        vector: m.vector,
        delivery: m.delivery,
        trigger: m.trigger,
        level: true,
    }
}

/// MSI routes mirroring the unmasked redirection entries, so KVM knows which vectors are
/// level-triggered and for which destinations (its EOI-exit bitmap).
fn routes_of(ioapic: &IoApic) -> Vec<kvm_irq_routing_entry> {
    (0..IOAPIC_PINS as usize)
        .filter_map(|pin| {
            let entry = ioapic.redirection(pin)?;
            if entry & REDIR_MASKED != 0 {
                return None;
            }
            // Bits 0-15 of a redirection entry are laid out as MSI data bits 0-15, and bits
            // 56-63 are the destination (MSI address bits 12-19, destination mode bit 11 ->
            // address bit 2).
            let address = 0xfee0_0000u32
                | (((entry >> 56) as u32 & 0xff) << 12)
                | (((entry >> 11) as u32 & 1) << 2);
            let data = (entry as u32) & 0x87ff | (1 << 14);
            let mut route = kvm_irq_routing_entry {
                gsi: pin as u32,
                type_: KVM_IRQ_ROUTING_MSI,
                ..Default::default()
            };
            route.u.msi.address_lo = address;
            route.u.msi.data = data;
            Some(route)
        })
        .collect()
}

/// Devices raise IOAPIC lines, which become MSIs.
impl IrqLines for SplitIoapic {
    fn set_level(&self, gsi: u32, level: bool) -> Result<(), String> {
        let mut out = Vec::new();
        self.lock()
            .set_irq(gsi, level, &mut out)
            .map_err(|e| format!("IOAPIC line {gsi}: {e}"))?;
        self.deliver(&out)
    }
}
