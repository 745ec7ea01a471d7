//! Helpers shared by the vcpu crate's KVM tests.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Where [`vm_with`] puts the guest's code (real mode, CS base 0).
#[allow(dead_code)] // not every test file runs real-mode code
pub const CODE: u64 = 0x1000;

/// Opens KVM, or prints a loud SKIPPED line (also appended to `$HVTRACE_SKIP_LOG`, which
/// `.ci/run` checks; the same protocol as the `tests` crate's `report_skip`, which this crate
/// cannot use without a dependency cycle) and returns `None`.
pub fn kvm_or_skip(test: &str) -> Option<Kvm> {
    match Kvm::new() {
        Ok(k) => Some(k),
        Err(e) => {
            let line = format!("SKIPPED: {test}: needs /dev/kvm ({e})");
            eprintln!("{line}");
            if let Some(path) = std::env::var_os("HVTRACE_SKIP_LOG") {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open HVTRACE_SKIP_LOG");
                writeln!(f, "{line}").expect("write HVTRACE_SKIP_LOG");
            }
            None
        }
    }
}

/// A one-vCPU VM with 64 KiB of RAM running `code` in real mode at [`CODE`].
#[allow(dead_code)] // not every test file runs real-mode code
pub fn vm_with(kvm: &Kvm, code: &[u8]) -> (VmFd, GuestMemoryMmap, VcpuFd) {
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    let host = mem.get_host_address(GuestAddress(0)).unwrap();
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: 0x10000,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `mem` is returned to the caller and outlives the VM in every test.
    unsafe { vm.set_user_memory_region(region).unwrap() };
    let vcpu = vm.create_vcpu(0).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let regs = kvm_bindings::kvm_regs {
        rip: CODE,
        rflags: 2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).unwrap();
    (vm, mem, vcpu)
}
