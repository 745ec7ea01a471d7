//! COM1: a 16550 UART (vm-superio) whose transmitter writes to stdout.

use std::io::{self, Write};
use std::sync::Mutex;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vm_superio::{Serial, Trigger};

use super::testdev::IrqLines;

/// First port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Number of ports COM1 decodes.
pub const COM1_LEN: u16 = 8;
/// ISA IRQ of COM1.
pub const COM1_IRQ: u32 = 4;

/// The UART's interrupt line: ISA IRQ 4 on the VM's interrupt controller, pulsed on each
/// interrupt, or unconnected when no controller takes ISA lines (then the count of dropped
/// interrupts is kept, since an interrupt-driven guest would wait for ever).
pub struct IrqLine {
    lines: Option<Arc<dyn IrqLines>>,
    dropped: AtomicU64,
}

impl IrqLine {
    /// A line on `lines`, or unconnected.
    pub fn new(lines: Option<Arc<dyn IrqLines>>) -> Self {
        IrqLine {
            lines,
            dropped: AtomicU64::new(0),
        }
    }

    /// Interrupts raised while the line was unconnected.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Trigger for IrqLine {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        match &self.lines {
            Some(lines) => lines
                .set_level(COM1_IRQ, true)
                .and_then(|()| lines.set_level(COM1_IRQ, false))
                .map_err(io::Error::other),
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
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

/// Serial output kept in memory, readable while the guest runs (`compare`, and tests and
/// benchmarks that drive [`crate::Vm`] as a library).
#[derive(Clone, Default)]
pub struct MemoryOutput(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for MemoryOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MemoryOutput {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}
