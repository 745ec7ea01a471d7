//! The multiboot information structure (MBI) handed to a multiboot kernel in EBX, and where
//! modules and the MBI go in guest memory.
//!
//! Placement follows QEMU: each module page-aligned after the kernel (never below 1 MiB), then
//! the MBI on the next page: the fixed 120-byte structure, the module list, the memory map and
//! the strings (command line, `hvtrace` as boot loader name, each module's string), all below
//! the 32-bit MMIO hole, since every MBI address is 32 bits.
//!
//! The MBI sets flags bits 0 (`mem_lower`/`mem_upper`), 2 (`cmdline`, also when empty),
//! 3 (modules, also when there are none), 6 (memory map) and 9 (boot loader name). The memory
//! map follows [`crate::layout`]: RAM below the VMM's low reserved area, the MP table and
//! legacy BIOS area (reserved), RAM from 1 MiB to the MMIO hole, the hole (reserved), and RAM
//! above 4 GiB when there is more than 3 GiB.

use super::multiboot::MultibootError;
use super::Module;
use crate::layout::{HIMEM_START, LOW_RESERVED_START, MMIO_HOLE_END, MMIO_HOLE_START};

/// EAX at a multiboot kernel's entry.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The boot loader name the kernel sees.
pub const LOADER_NAME: &str = "hvtrace";
/// MBI flags hvtrace sets: mem, cmdline, mods, mmap, boot_loader_name.
pub const MBI_FLAGS: u32 = 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9;
/// Size of the fixed part of the MBI (up to and including the framebuffer fields).
pub const MBI_SIZE: usize = 120;
/// Memory-map entry type of usable RAM.
pub const MMAP_RAM: u32 = 1;
/// Memory-map entry type of reserved memory.
pub const MMAP_RESERVED: u32 = 2;

const PAGE: u64 = 0x1000;

/// The MBI and modules, planned: what to write where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MbiPlan {
    /// Each module's `[start, end)`.
    pub modules: Vec<(u64, u64)>,
    /// Physical address of the MBI.
    pub addr: u64,
    /// The MBI's bytes (structure, module list, memory map, strings).
    pub bytes: Vec<u8>,
}

/// The memory map of a guest with `mem` bytes: (base, length, type).
pub fn memory_map(mem: u64) -> Vec<(u64, u64, u32)> {
    let low = mem.min(MMIO_HOLE_START);
    let mut map = vec![
        (0, LOW_RESERVED_START, MMAP_RAM),
        (
            LOW_RESERVED_START,
            HIMEM_START - LOW_RESERVED_START,
            MMAP_RESERVED,
        ),
        (HIMEM_START, low - HIMEM_START, MMAP_RAM),
        (
            MMIO_HOLE_START,
            MMIO_HOLE_END - MMIO_HOLE_START,
            MMAP_RESERVED,
        ),
    ];
    if mem > low {
        map.push((MMIO_HOLE_END, mem - low, MMAP_RAM));
    }
    map
}

fn page_up(addr: u64) -> u64 {
    addr.div_ceil(PAGE) * PAGE
}

/// Plans modules and the MBI after a kernel ending at `kernel_end`, for a guest of `mem`
/// bytes with command line `cmdline`.
pub fn plan(
    kernel_end: u64,
    modules: &[Module],
    cmdline: &str,
    mem: u64,
) -> Result<MbiPlan, MultibootError> {
    let ram = mem.min(MMIO_HOLE_START);
    let mut next = page_up(kernel_end.max(HIMEM_START));
    let mut placed = Vec::with_capacity(modules.len());
    for m in modules {
        let end = next + m.bytes.len() as u64;
        placed.push((next, end));
        next = page_up(end);
    }
    let addr = next;
    let bytes = build(addr, &placed, modules, cmdline, mem);
    let end = addr + bytes.len() as u64;
    if end > ram {
        return Err(MultibootError::DoesNotFit { end, ram });
    }
    Ok(MbiPlan {
        modules: placed,
        addr,
        bytes,
    })
}

/// The MBI's bytes for placement at `addr`, with modules at `placed`.
fn build(addr: u64, placed: &[(u64, u64)], modules: &[Module], cmdline: &str, mem: u64) -> Vec<u8> {
    let map = memory_map(mem);
    let mods_at = MBI_SIZE;
    let mmap_at = mods_at + 16 * placed.len();
    let strings_at = mmap_at + 24 * map.len();
    let mut out = vec![0u8; strings_at];
    // The strings, each NUL-terminated; remember their addresses.
    let add_string = |out: &mut Vec<u8>, s: &str| -> u32 {
        let at = addr as u32 + out.len() as u32;
        out.extend_from_slice(s.as_bytes());
        out.push(0);
        at
    };
    let cmdline_addr = add_string(&mut out, cmdline);
    let name_addr = add_string(&mut out, LOADER_NAME);
    let mod_strings: Vec<u32> = modules
        .iter()
        .map(|m| add_string(&mut out, &m.args))
        .collect();
    let put =
        |out: &mut Vec<u8>, at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let low = mem.min(MMIO_HOLE_START);
    put(&mut out, 0, MBI_FLAGS);
    put(&mut out, 4, (LOW_RESERVED_START / 1024) as u32);
    put(&mut out, 8, ((low - HIMEM_START) / 1024) as u32);
    put(&mut out, 16, cmdline_addr);
    put(&mut out, 20, placed.len() as u32);
    put(&mut out, 24, addr as u32 + mods_at as u32);
    put(&mut out, 44, (24 * map.len()) as u32);
    put(&mut out, 48, addr as u32 + mmap_at as u32);
    put(&mut out, 64, name_addr);
    for (i, ((start, end), string)) in placed.iter().zip(&mod_strings).enumerate() {
        let at = mods_at + 16 * i;
        put(&mut out, at, *start as u32);
        put(&mut out, at + 4, *end as u32);
        put(&mut out, at + 8, *string);
    }
    for (i, (base, len, kind)) in map.iter().enumerate() {
        let at = mmap_at + 24 * i;
        put(&mut out, at, 20);
        out[at + 4..at + 12].copy_from_slice(&base.to_le_bytes());
        out[at + 12..at + 20].copy_from_slice(&len.to_le_bytes());
        put(&mut out, at + 20, *kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn string_at(plan: &MbiPlan, addr: u32) -> String {
        let off = (u64::from(addr) - plan.addr) as usize;
        let len = plan.bytes[off..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8(plan.bytes[off..off + len].to_vec()).unwrap()
    }

    #[test]
    fn modules_and_mbi_follow_the_kernel_page_aligned() {
        let modules = vec![
            Module {
                bytes: vec![1; 5000],
                args: "one arg".into(),
            },
            Module {
                bytes: vec![2; 10],
                args: String::new(),
            },
        ];
        let p = plan(0x10_2345, &modules, "a=b", 256 << 20).unwrap();
        assert_eq!(
            p.modules,
            vec![(0x10_3000, 0x10_4388), (0x10_5000, 0x10_500a)]
        );
        assert_eq!(p.addr, 0x10_6000);
        let b = &p.bytes;
        assert_eq!(u32_at(b, 0), MBI_FLAGS);
        assert_eq!(u32_at(b, 4), 636);
        assert_eq!(u32_at(b, 8), (255 << 20) / 1024);
        assert_eq!(string_at(&p, u32_at(b, 16)), "a=b");
        assert_eq!(u32_at(b, 20), 2);
        let mods = (u32_at(b, 24) as u64 - p.addr) as usize;
        assert_eq!(u32_at(b, mods), 0x10_3000);
        assert_eq!(u32_at(b, mods + 4), 0x10_4388);
        assert_eq!(string_at(&p, u32_at(b, mods + 8)), "one arg");
        assert_eq!(string_at(&p, u32_at(b, mods + 16 + 8)), "");
        assert_eq!(string_at(&p, u32_at(b, 64)), "hvtrace");
        let mmap = (u32_at(b, 48) as u64 - p.addr) as usize;
        assert_eq!(u32_at(b, 44), 24 * 4);
        let ram: u64 = (0..4)
            .map(|i| &b[mmap + 24 * i..])
            .filter(|e| u32_at(e, 20) == MMAP_RAM)
            .map(|e| u64::from_le_bytes(e[12..20].try_into().unwrap()))
            .sum();
        assert_eq!(ram, 0x9_f000 + (255 << 20));
    }

    #[test]
    fn large_memory_maps_ram_above_4_gib() {
        let map = memory_map(5 << 30);
        assert_eq!(map.last(), Some(&(MMIO_HOLE_END, 2 << 30, MMAP_RAM)));
        assert_eq!(
            map[2],
            (HIMEM_START, MMIO_HOLE_START - HIMEM_START, MMAP_RAM)
        );
    }

    #[test]
    fn a_low_kernel_still_puts_modules_above_1_mib() {
        let p = plan(0x9000, &[], "", 16 << 20).unwrap();
        assert_eq!(p.addr, HIMEM_START);
    }

    #[test]
    fn modules_that_do_not_fit_are_refused() {
        let big = Module {
            bytes: vec![0; 15 << 20],
            args: String::new(),
        };
        assert!(matches!(
            plan(0x20_0000, &[big], "", 16 << 20),
            Err(MultibootError::DoesNotFit { .. })
        ));
    }
}
