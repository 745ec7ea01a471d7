//! The one place exits are routed: port I/O to devices, MMIO to what owns the address, fatal
//! exits to the controller.

use std::io::Write;
use std::sync::Arc;

use vcpu::{ExitHandler, FatalReport};

use crate::devices::testdev::{self, IrqLines};
use crate::devices::{DebugExit, SerialPort, COM1_BASE, COM1_LEN, DEBUG_EXIT_PORT};
use crate::irqchip::IrqChipMode;
use crate::layout::IOAPIC_BASE;
use crate::outcome::{EndSignal, Ending};

/// Output sink of the guest's serial port.
pub type SerialOut = Box<dyn Write + Send>;

/// Routes every exit of every vCPU.
pub struct Dispatcher {
    pub(crate) serial: SerialPort<SerialOut>,
    pub(crate) debug_exit: DebugExit,
    pub(crate) end: Arc<EndSignal>,
    pub(crate) irqchip: IrqChipMode,
    /// Interrupt lines the IRQ test device drives; `None` when no controller takes them.
    pub(crate) irq_lines: Option<Arc<dyn IrqLines>>,
}

impl Dispatcher {
    fn com1_offset(port: u16) -> Option<u8> {
        port.checked_sub(COM1_BASE)
            .filter(|o| *o < COM1_LEN)
            .map(|o| o as u8)
    }

    fn check_mmio(&self, addr: u64, write: bool) -> Result<(), String> {
        if self.irqchip == IrqChipMode::Split && (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&addr)
        {
            return Err(format!(
                "IOAPIC {} at {addr:#x} under --irqchip split: the user-space IOAPIC arrives with the apic work; use --irqchip kvm",
                if write { "write" } else { "read" }
            ));
        }
        Ok(())
    }
}

impl ExitHandler for Dispatcher {
    fn io_in(&self, _cpu: usize, port: u16, data: &mut [u8]) -> Result<(), String> {
        match Self::com1_offset(port) {
            Some(offset) => {
                data.fill(0);
                if let Some(b) = data.first_mut() {
                    *b = self.serial.read(offset);
                }
            }
            None => data.fill(0xff),
        }
        Ok(())
    }

    fn io_out(&self, _cpu: usize, port: u16, data: &[u8]) -> Result<(), String> {
        if let Some(offset) = Self::com1_offset(port) {
            if let Some(b) = data.first() {
                self.serial.write(offset, *b)?;
            }
        } else if port == DEBUG_EXIT_PORT {
            self.end.finish(Ending::Exit(self.debug_exit.status(data)));
        } else if let Some(line) = testdev::line_of(port) {
            let level = data.iter().any(|b| *b != 0);
            match &self.irq_lines {
                Some(lines) => lines.set_level(line, level)?,
                None => {
                    return Err(format!(
                        "IRQ test device: line {line} set to {level}, but --irqchip {} has no interrupt controller for it yet",
                        self.irqchip
                    ))
                }
            }
        }
        Ok(())
    }

    fn mmio_read(&self, _cpu: usize, addr: u64, data: &mut [u8]) -> Result<(), String> {
        self.check_mmio(addr, false)?;
        data.fill(0xff);
        Ok(())
    }

    fn mmio_write(&self, _cpu: usize, addr: u64, _data: &[u8]) -> Result<(), String> {
        self.check_mmio(addr, true)
    }

    fn fatal(&self, report: FatalReport) {
        self.end.finish(Ending::Fatal(report));
    }
}
