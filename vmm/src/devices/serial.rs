//! COM1: a 16550 UART (vm-superio) whose transmitter writes to stdout.

use std::io::{self, Write};
use std::sync::Mutex;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// First port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Number of ports COM1 decodes.
pub const COM1_LEN: u16 = 8;
/// ISA IRQ of COM1.
pub const COM1_IRQ: u32 = 4;

/// The UART's interrupt line: an eventfd wired to KVM's irqchip with an irqfd, or nothing when
/// no interrupt controller is attached to the ISA IRQ (then an interrupt-driven guest would
/// wait forever, so the count of dropped interrupts is kept).
pub struct IrqLine {
    eventfd: Option<EventFd>,
    dropped: std::sync::atomic::AtomicU64,
}

impl IrqLine {
    /// A line backed by `eventfd` (registered with KVM by the caller), or unconnected.
    pub fn new(eventfd: Option<EventFd>) -> Self {
        IrqLine {
            eventfd,
            dropped: Default::default(),
        }
    }

    /// Interrupts raised while the line was unconnected.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Trigger for IrqLine {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        match &self.eventfd {
            Some(fd) => fd.write(1),
            None => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

/// The UART with its output sink, shared by all vCPU threads.
pub struct SerialPort<W: Write + Send> {
    uart: Mutex<Serial<IrqLine, vm_superio::serial::NoEvents, W>>,
}

impl<W: Write + Send> SerialPort<W> {
    /// A UART writing to `out`, interrupting through `irq`.
    pub fn new(irq: IrqLine, out: W) -> Self {
        SerialPort {
            uart: Mutex::new(Serial::new(irq, out)),
        }
    }

    /// A read of `COM1_BASE + offset`.
    pub fn read(&self, offset: u8) -> u8 {
        self.lock().read(offset)
    }

    /// A write of `COM1_BASE + offset`.
    pub fn write(&self, offset: u8, value: u8) -> Result<(), String> {
        self.lock()
            .write(offset, value)
            .map_err(|e| format!("serial port write failed: {e:?}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Serial<IrqLine, vm_superio::serial::NoEvents, W>> {
        self.uart.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the output sink (used by tests to read what the guest printed).
    pub fn with_output<R>(&self, f: impl FnOnce(&W) -> R) -> R {
        f(self.lock().writer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmitter_writes_to_the_sink() {
        let port = SerialPort::new(IrqLine::new(None), Vec::new());
        for b in b"hi\n" {
            port.write(0, *b).unwrap();
        }
        // LSR: transmitter empty bits set.
        assert_eq!(port.read(5) & 0x60, 0x60);
        assert_eq!(port.with_output(|o| o.clone()), b"hi\n");
    }
}
