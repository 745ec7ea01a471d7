//! Errors of the VMM library. Each variant's message names what was wrong.

use std::path::PathBuf;

use crate::loader::LoadError;

/// Everything that can stop a VM from being built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// `/dev/kvm` is missing or not accessible.
    #[error("cannot open /dev/kvm: {source}{hint}")]
    KvmOpen {
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// A hint on how to fix it.
        hint: &'static str,
    },
    /// A KVM ioctl failed.
    #[error("KVM {what} failed: {source}")]
    Kvm {
        /// What the VMM was doing.
        what: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The host's KVM lacks a capability the VMM needs.
    #[error("this host's KVM lacks {0}")]
    MissingCapability(&'static str),
    /// The requested RAM size is out of range.
    #[error("memory size {bytes} bytes is out of range: must be between {min} and {max} bytes")]
    MemSize {
        /// Requested size.
        bytes: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// Guest RAM could not be mapped.
    #[error("cannot map guest memory: {0}")]
    GuestMemory(#[source] vm_memory::mmap::FromRangesError),
    /// A write to guest memory failed.
    #[error("cannot write {what} into guest memory: {source}")]
    GuestWrite {
        /// What was being written.
        what: &'static str,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// The vCPU count is out of range.
    #[error("--cpus {requested} is out of range: this host allows 1 to {max} vCPUs")]
    CpuCount {
        /// Requested count.
        requested: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// The vCPUs' CPUID table could not be built.
    #[error(transparent)]
    Cpuid(#[from] crate::cpuid::CpuidError),
    /// hvtrace's own APIC could not be configured.
    #[error(transparent)]
    EmulatedApic(#[from] crate::irqchip::emulated::EmulatedIrqchipError),
    /// A VMM thread could not be started.
    #[error("cannot start a VMM thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The command line does not fit.
    #[error("command line is {len} bytes; at most {max} fit")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No built-in guest has that name.
    #[error("no built-in guest named '{name}' (known: {known})")]
    UnknownGuest {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The kernel image file could not be read.
    #[error("cannot read kernel image {path}: {source}")]
    ImageRead {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `--module` file could not be read.
    #[error("cannot read module {path}: {source}")]
    ModuleRead {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel image could not be loaded.
    #[error("cannot load kernel image {image}: {source}")]
    Load {
        /// The image's name or path.
        image: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A bzImage's compressed kernel could not be read (for its symbols and types).
    #[error("cannot read the kernel inside bzImage {image}: {source}")]
    BzImage {
        /// The image's name or path.
        image: String,
        /// Why.
        #[source]
        source: tracer::bzimage::BzImageError,
    },
    /// A bzImage kernel's KASLR slide cannot be tracked (symbols it needs are missing).
    #[error("cannot trace the bzImage's kernel: {0}")]
    Kaslr(String),
    /// The D program could not be set up.
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    /// Probes could not be armed.
    #[error(transparent)]
    Probes(#[from] crate::probes::ProbeError),
    /// fbt probes were asked of a 32-bit image.
    #[error("fbt probes need 64-bit code, and this image is a 32-bit (ELF32) kernel; its other providers (vmexit, apic, profile, tick) work")]
    FbtNeeds64BitCode,
    /// No trap strategy works on this host with this irqchip.
    #[error(transparent)]
    NoTrapStrategy(crate::host_traps::NoTrapStrategy),
    /// A vCPU operation failed.
    #[error(transparent)]
    Vcpu(#[from] vcpu::VcpuError),
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

/// Shorthand for a KVM ioctl error mapper.
pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { what, source }
}
