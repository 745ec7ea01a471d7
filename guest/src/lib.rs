//! The built-in guests: tiny x86_64 long-mode kernels written in assembly.
//!
//! `build.rs` assembles `asm/*.S` and links each guest into an ELF64 executable (symbol table
//! kept, so the tracer can probe guest functions by name); this crate embeds the images. The
//! two 32-bit multiboot test kernels ([`multiboot_kernels`]) are built from the same folder.
//!
//! Boot contract (see `asm/common.h`): each image is linked at 1 MiB and its `PT_LOAD` segments
//! are loaded at their physical addresses; `e_entry` (`_start`) is entered on the BSP in 64-bit
//! mode with RDI pointing at the boot-info block (at 0x1000 under hvtrace). Guests print on COM1 (0x3f8) and end
//! the VM by writing their exit status to I/O port 0xf4. Each image also carries a Multiboot
//! (v1) header with the a.out kludge and a 32-bit entry stub (`asm/mb64.S`), so
//! `qemu-system-x86_64 -kernel` runs it too (hvtrace itself enters `_start`). Functions common to every guest:
//! `_start`, `guest_main`, `serial_init`, `serial_putc`, `serial_puts`, `print_dec`,
//! `serial_lock`, `serial_unlock`, `exit_guest`, `halt_forever`.
//!
//! `smp` exit statuses: 0 all CPUs online, 1 some AP did not check in, 2 bad boot-info magic,
//! 3 MP table missing/invalid or disagreeing with `boot_info.cpu_count`, 4 an IPI stayed
//! undelivered (ICR busy), 5 the serial lock timed out. `fault` never exits 0.
//! `breakpoint` exits 0 when its `int3` reached its #BP handler with a native frame, 1 when
//! the handler never ran, 2 when the frame's RIP was wrong.
//! `spin` exit statuses (else it loops until stopped): 0 a bounded mode (`mode=calls`, `outs`,
//! `loop` or `stepcalls`, for the probe benchmark) finished its loop, 3 bad command line, and with
//! `cpus=all` 1 an AP did not come online, 4 an IPI to start an AP stayed undelivered, 8 MP
//! table missing/invalid or disagreeing with `boot_info.cpu_count`.
//! `apic-conformance` exits with its number of failed checks (at most 255), 255 also when
//! an unexpected exception or a missing MP table stops it.
//! `ipi-bench` exit statuses: 0 measured, 2 bad boot-info magic, 3 bad `iters=`, 4 an IPI to
//! start the AP stayed undelivered, 6 fewer than 2 vCPUs, 7 the AP did not come online, 8 a
//! round timed out (watchdog), 9 an unexpected exception or interrupt.
//! `xcall-lab` exit statuses: 0 every cross-call variant had its expected outcome (`mutual`
//! and `recursion-irqs-off` hang, caught by the guest's deadman; the rest complete), 1 some
//! did not, 2 bad boot-info magic, 3 bad command line, 4 an IPI to start an AP stayed
//! undelivered, 6 fewer than 2 or more than 16 vCPUs, 7 an AP did not come online, 8 MP table
//! unusable, 9 an unexpected exception or interrupt.

/// One built-in guest.
#[derive(Debug)]
pub struct Guest {
    /// Short name used on the command line (`hvtrace run <name>`).
    pub name: &'static str,
    /// One line saying what the guest does, for `hvtrace guests`.
    pub description: &'static str,
    /// The image: an ELF64 executable (a multiboot kernel for [`multiboot_kernels`]).
    pub image: &'static [u8],
}

/// The name of the guest that `hvtrace run` uses when none is given.
pub const DEFAULT_GUEST: &str = "smp";

/// Embeds the image `build.rs` linked for guest `$name`.
macro_rules! image {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".elf"))
    };
}

static GUESTS: [Guest; 10] = [
    Guest {
        name: "hello",
        description: "prints `hello from hvtrace guest` on the serial port and exits 0",
        image: image!("hello"),
    },
    Guest {
        name: "smp",
        description: "counts CPUs in the MP table, starts each AP with INIT-SIPI-SIPI, \
                      each prints `cpu N online`; exits 0 if all come online (1: some \
                      did not, 3: MP table disagrees with boot info)",
        image: image!("smp"),
    },
    Guest {
        name: "fault",
        description: "prints one line, then executes a VEX instruction (andn) that KVM \
                      cannot emulate at CPL0 (else ud2, a triple fault); never exits 0",
        image: image!("fault"),
    },
    Guest {
        name: "breakpoint",
        description: "executes int3 under its own #BP handler and checks it ran once with \
                      a native frame (saved RIP after the int3), then fwait, then stmxcsr and \
                      ldmxcsr (MXCSR reads back 0x1f80, then what was loaded; a reserved bit \
                      raises #GP(0) at the ldmxcsr); exits 0 (1: not handled, 2: wrong \
                      frame, 3: MXCSR wrong, 4: no #GP)",
        image: image!("breakpoint"),
    },
    Guest {
        name: "pci",
        description: "probes PCI configuration mechanism #1 (ports 0xCF8/0xCFC) as Linux \
                      does: the address register reads back, 00:00.0 is the host bridge \
                      8086:0d57 of class 06/00/00 at dword, word and byte width, 00:01.0 and \
                      disabled accesses read all ones; exits 0 (else the failed check's \
                      number)",
        image: image!("pci"),
    },
    Guest {
        name: "spin",
        description: "prints its mode, then loops forever (deliberately never ends; for \
                      testing --timeout): `mode=busy` (default: cli; pause), `mode=halt` \
                      (sti; hlt), `mode=count` (a per-CPU counter in `spin_counters`); \
                      `cpus=all` also starts every AP into the loop (exit 3: bad command \
                      line); bounded, for the probe benchmark: `mode=calls` (calls the empty \
                      `bench_target`), `mode=stepcalls` (calls `bench_target_step`, whose \
                      first instruction the VMM does not emulate), `mode=outs` (outb to port \
                      0x80, a bare PIO exit), `mode=mmios` (reads the local APIC ID register, a bare \
                      MMIO exit), `mode=msrs` (rdmsr of IA32_TSC_DEADLINE, a bare MSR exit) or \
                      `mode=loop` (empty body) N times (`n=N`, default 20000, at most \
                      10000000) on the BSP, prints `spin: MODE done n=N ticks=T tsc_khz=K` \
                      and exits 0",
        image: image!("spin"),
    },
    Guest {
        name: "spin-scale",
        description: "`spin` with 10,000 more tiny functions (`many_fn_0` .. `many_fn_9999`, never \
                      called), for the benchmark of probe cost as the number of armed sites grows",
        image: image!("spin-scale"),
    },
    Guest {
        name: "apic-conformance",
        description: "checks the local APIC and IOAPIC against the Intel SDM, one \
                      `PASS|FAIL|SKIP name` line per check (`checks=a,b` on the command \
                      line runs a subset); exits with the number of failures",
        image: image!("apic-conformance"),
    },
    Guest {
        name: "ipi-bench",
        description: "2+ vCPUs: times IPI round trips between two halted vCPUs and IOAPIC \
                      interrupt latency into a halted vCPU; prints `ipi-bench: <what>_ns \
                      median=.. p99=.. min=.. n=..` (`iters=N`, `irq=0` on the command line)",
        image: image!("ipi-bench"),
    },
    Guest {
        name: "xcall-lab",
        description: "2-16 vCPUs: a DTrace-style cross call (one IPI vector, acks, TSC \
                      deadman) in the variants of the xcall story (EOI early/late, caller \
                      IF on/off, mutual, recursion, timer); one `xcall-lab: NAME: ok|HANG \
                      ...` line each (`variant=a,b`, `calls=N`, `deadman_ms=N`)",
        image: image!("xcall-lab"),
    },
];

/// The 32-bit Multiboot (v1) test kernels (`asm/mb_kernel.S`): entered as the Multiboot spec
/// says, they check the multiboot information, print one `mb: ...` line per fact (modules
/// with their size, FNV-1a 32 checksum and string) and exit through port 0xf4 with the
/// `exit=N` of their command line (default 0), 0x40 + the number of failed checks, or 0x7f
/// for a bad boot magic.
static MULTIBOOT_KERNELS: [Guest; 2] = [
    Guest {
        name: "mb-elf32",
        description: "multiboot test kernel, ELF32 (no a.out kludge): checks and prints the \
                      multiboot information and modules, exits with `exit=N` (QEMU \
                      convention: status (N << 1) | 1)",
        image: include_bytes!(concat!(env!("OUT_DIR"), "/mb-elf32.elf")),
    },
    Guest {
        name: "mb-aout",
        description: "the same multiboot test kernel as a flat binary loaded through the \
                      a.out-kludge header addresses",
        image: include_bytes!(concat!(env!("OUT_DIR"), "/mb-aout.bin")),
    },
];

/// Every built-in guest of hvtrace's own 64-bit protocol, in listing order.
pub fn all() -> &'static [Guest] {
    &GUESTS
}

/// The multiboot test kernels (not in [`all`]: they are 32-bit and have no ELF64 symbols).
pub fn multiboot_kernels() -> &'static [Guest] {
    &MULTIBOOT_KERNELS
}

/// Looks a guest up by name, the multiboot test kernels included.
pub fn find(name: &str) -> Option<&'static Guest> {
    GUESTS
        .iter()
        .chain(MULTIBOOT_KERNELS.iter())
        .find(|g| g.name == name)
}

#[cfg(test)]
mod tests;
