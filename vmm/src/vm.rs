//! Building a VM from a [`VmConfig`] and running it to an [`Outcome`].

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_fpu, kvm_msr_entry, kvm_userspace_memory_region, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use vcpu::{VcpuHandle, World};

use crate::acpi;
use crate::boot::{
    entry_regs, linux64_entry_regs, linux_long_mode_sregs, long_mode_sregs, write_boot_tables,
    BootInfo,
};
use crate::boot32;
use crate::control::{ControlContext, ControlSocket};
use crate::cpuid::{patch_for_emulated_apic, patch_for_vcpu};
use crate::devices::serial::IrqLine;
use crate::devices::testdev::IrqLines;
use crate::devices::{DebugExit, ExitConvention, PciBus, SerialPort};
use crate::disasm::decode_one;
use crate::dispatch::{Dispatcher, GuestRam, SerialOut};
use crate::error::{kvm, VmmError};
use crate::host_lzcnt::decompressor_traps;
use crate::host_traps::{trap_strategy, TrapStrategy};
use crate::irqchip::clock::GuestClock;
use crate::irqchip::emulated::EmulatedIrqchip;
use crate::irqchip::split::SplitIoapic;
use crate::irqchip::{self, IrqChipMode};
use crate::kaslr::place::KernelPlace;
use crate::layout::create_guest_memory;
use crate::loader::{load_image, BootProtocol, LoadedImage, Module};
use crate::mptable;
use crate::outcome::{EndHandle, EndSignal, Ending, FaultDetails, Outcome, VcpuStatus};
use crate::probes::{AddressMap, HitHook, ProbeError, ProbeSet};
use crate::timeline::{ApicFanOut, Timeline};
use crate::trace::{
    plan, GuestPaging, LocalSink, Sessions, TraceSpec, TraceTarget, Tracing, VcpuAccess,
};
use tracer::bzimage::kernel_elf;
use tracer::probes::catalogue;
use tracer::symbols::kallsyms::ImageKallsyms;
use tracer::symbols::ElfSymbols;

mod arming;
use arming::{Arming, SessionStart};

/// Most vCPUs a VM may have: APIC IDs 0-254 (255 is the xAPIC broadcast ID).
pub const MAX_CPUS: usize = 254;
/// How long the controller waits for a vCPU to stop or exit before reporting it.
pub const STOP_BOUND: Duration = Duration::from_secs(2);

/// A guest image: its name (for messages) and its bytes.
#[derive(Clone, Debug)]
pub struct Image {
    /// Name or path, for messages.
    pub name: String,
    /// The image's bytes: an ELF64 executable or a multiboot kernel.
    pub bytes: Vec<u8>,
}

/// Everything needed to run a VM.
pub struct VmConfig {
    /// The kernel image.
    pub image: Image,
    /// Number of vCPUs.
    pub cpus: usize,
    /// RAM size in bytes.
    pub mem: u64,
    /// Interrupt controller.
    pub irqchip: IrqChipMode,
    /// Command line handed to the guest.
    pub cmdline: String,
    /// Boot modules (multiboot kernels only).
    pub modules: Vec<Module>,
    /// Stop the guest after this long.
    pub timeout: Option<Duration>,
    /// Where the guest's serial output goes.
    pub serial_out: SerialOut,
    /// Function-boundary probes to arm before the first instruction (`fbt:...` descriptions).
    pub probes: Vec<String>,
    /// A D program to run against the guest.
    pub trace: Option<TraceSpec>,
    /// Serve a control socket at this path, for `hvtrace trace --attach`.
    pub control: Option<std::path::PathBuf>,
    /// Record what every vCPU does (`--timeline`, `compare`).
    pub timeline: Option<Arc<Timeline>>,
    /// `-v`: say on stderr when and where deferred probes are armed (a bzImage's KASLR).
    pub verbose: bool,
}

/// Opens `/dev/kvm` with an error that says how to fix the usual problems.
pub fn open_kvm() -> Result<Kvm, VmmError> {
    Kvm::new().map_err(|e| {
        let source = std::io::Error::from_raw_os_error(e.errno());
        let hint = match e.errno() {
            libc::ENOENT => {
                " (no KVM on this machine: load the kvm module or enable virtualization)"
            }
            libc::EACCES | libc::EPERM => {
                " (permission denied: add yourself to the 'kvm' group or run as root)"
            }
            _ => "",
        };
        VmmError::KvmOpen { source, hint }
    })
}

/// Highest vCPU count this host and VMM allow.
pub fn max_cpus(kvm: &Kvm) -> usize {
    kvm.get_max_vcpus().clamp(1, MAX_CPUS)
}

/// A VM that is built and ready to run.
///
/// Fields drop in order: vCPU threads first, then the VM fd, then guest memory.
pub struct Vm {
    vcpus: Vec<VcpuHandle>,
    apic: Option<Arc<EmulatedIrqchip>>,
    probes: Option<Arc<ProbeSet>>,
    /// The D program of `run -n`, if any (set later when its probes wait for a bzImage
    /// kernel's KASLR slide).
    tracing: Arc<OnceLock<Arc<Tracing>>>,
    /// A bzImage kernel's place, found while it runs (deferred arming, attaching clients).
    place: Option<Arc<KernelPlace>>,
    /// Every running trace session (the run's own and attached ones).
    sessions: Arc<Sessions>,
    /// The control socket, bound, with what attached clients need; served from `run`.
    control: Option<(ControlSocket, Arc<ControlContext>)>,
    end: Arc<EndSignal>,
    /// The run's timeline, when recorded (gets each APIC's final state).
    timeline: Option<Arc<Timeline>>,
    timeout: Option<Duration>,
    _vm: Arc<VmFd>,
    memory: GuestMemoryMmap,
}

impl Vm {
    /// Builds the VM: memory, irqchip, image, boot tables, vCPUs (started paused).
    pub fn new(mut config: VmConfig) -> Result<Vm, VmmError> {
        let kvm_handle = open_kvm()?;
        let max = max_cpus(&kvm_handle);
        if config.cpus == 0 || config.cpus > max {
            return Err(VmmError::CpuCount {
                requested: config.cpus,
                max,
            });
        }
        let vm = Arc::new(kvm_handle.create_vm().map_err(kvm("KVM_CREATE_VM"))?);
        let memory = create_guest_memory(config.mem)?;
        register_memory(&vm, &memory)?;
        irqchip::setup(&kvm_handle, &vm, config.irqchip)?;

        // Every guest gets ACPI tables (as every guest gets the MP table); a PVH kernel is
        // also told where they are.
        let rsdp = acpi::write(
            &memory,
            acpi::AcpiMachine {
                cpus: config.cpus as u8,
                pic: config.irqchip == IrqChipMode::Kvm,
            },
        )?;
        let loaded = load_image(
            &memory,
            config.mem,
            &config.image.bytes,
            &config.modules,
            &config.cmdline,
            rsdp,
        )
        .map_err(|source| VmmError::Load {
            image: config.image.name.clone(),
            source,
        })?;
        let lzcnt = decompressor_traps(&memory, &config.image.bytes, &loaded, config.irqchip)?;
        for warning in &loaded.warnings {
            eprintln!("hvtrace: warning: {warning}");
        }
        let multiboot = matches!(loaded.protocol, BootProtocol::Multiboot { .. });
        let pvh = matches!(loaded.protocol, BootProtocol::Pvh { .. });
        let bzimage = matches!(loaded.protocol, BootProtocol::Linux64 { .. });
        mptable::write(&memory, config.cpus as u8)?;

        let use_sync_regs = kvm_handle.check_extension(Cap::SyncRegs);
        let supported = kvm_handle
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let mut fds = Vec::with_capacity(config.cpus);
        for cpu in 0..config.cpus {
            let fd = vm.create_vcpu(cpu as u64).map_err(kvm("KVM_CREATE_VCPU"))?;
            let mut cpuid = supported.clone();
            patch_for_vcpu(&mut cpuid, cpu as u32, config.cpus as u32)?;
            if config.irqchip == IrqChipMode::Emulated {
                patch_for_emulated_apic(&mut cpuid);
            }
            fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
            if cpu == 0 {
                setup_bsp(&fd, &loaded)?;
            }
            fds.push(fd);
        }

        // Symbols and the probe catalogue are read once, and only when something is traced
        // or may be (a plain run needs no symbol table).
        let boot = Instant::now();
        let sessions = Arc::new(Sessions::default());
        let paging = Arc::new(GuestPaging::new(config.cpus));
        let traced =
            !config.probes.is_empty() || config.trace.is_some() || config.control.is_some();
        let mut control = None;
        let end = Arc::new(EndSignal::default());
        let tracing: Arc<OnceLock<Arc<Tracing>>> = Arc::new(OnceLock::new());
        let mut place = None;
        let probes = if traced {
            // A bzImage's symbols, types and probe sites come from the kernel ELF its payload
            // decompresses to; any other image is that ELF, and its bytes (not needed in the
            // config any more) move here instead of being copied.
            let decompressed = match kernel_elf(&config.image.bytes) {
                Ok(Cow::Owned(elf)) => Some(elf),
                Ok(Cow::Borrowed(_)) => None,
                Err(source) => {
                    return Err(VmmError::BzImage {
                        image: config.image.name.clone(),
                        source,
                    })
                }
            };
            let kernel: Arc<Vec<u8>> =
                Arc::new(decompressed.unwrap_or_else(|| std::mem::take(&mut config.image.bytes)));
            // A kernel without `.symtab` (a distribution's) has its functions, its current
            // task and its KASLR anchors in kallsyms: decoded once here, for all three.
            let kallsyms = ImageKallsyms::new(&kernel);
            let symbols = ElfSymbols::load_with(&kallsyms).map_err(ProbeError::from)?;
            let mut all = catalogue(&kernel, &symbols);
            // A Linux kernel's BTF types `args[N]` and `->`, and its kallsyms locate the
            // current task (per-CPU offsets are absolute: no slide); read once per VM, for
            // `run -n` and every attaching client.
            let kernel_types = Arc::new(crate::trace::kernel_types(&kallsyms));
            paging.set_wants_kernel_gs_base(kernel_types.is_ok());
            let planned = match &config.trace {
                Some(spec) => Some(plan(spec, &all, &kernel_types)?),
                None => None,
            };
            let raw = ProbeSet::resolve(&all, &config.probes)?;
            let needs_traps =
                !raw.is_empty() || planned.as_ref().is_some_and(|p| !p.fbt.is_empty());
            // fbt decodes and emulates 64-bit code: a 32-bit image (an ELF32 multiboot kernel)
            // gets no fbt probes, here or from an attaching client.
            if kernel.get(4) == Some(&1) {
                if needs_traps {
                    return Err(VmmError::FbtNeeds64BitCode);
                }
                all.retain(|p| p.provider != "fbt");
            }
            // Probing the host costs milliseconds: only where probes may be armed.
            let choice =
                (needs_traps || config.control.is_some()).then(|| trap_strategy(config.irqchip));
            let strategy = match &choice {
                Some(Ok(choice)) => choice.strategy,
                Some(Err(none)) if needs_traps => {
                    return Err(VmmError::NoTrapStrategy(none.clone()))
                }
                _ => TrapStrategy::Hlt,
            };
            let target = TraceTarget {
                symbols: symbols.clone(),
                memory: memory.clone(),
                paging: Arc::clone(&paging),
                cpus: config.cpus,
                boot,
                kernel: kernel_types,
            };
            let mut probe_set = ProbeSet::new(config.cpus, strategy);
            if !bzimage {
                probe_set = probe_set.with_address_map(AddressMap::new(loaded.mappings.clone()));
            }
            let probes = Arc::new(probe_set);
            probes.set_paging(Arc::clone(&paging));
            probes.set_sync_observer(sessions.clone());
            if let Some(t) = &config.timeline {
                probes.set_timeline(Arc::clone(t));
            }
            // A bzImage's kernel is not where its link addresses say until it runs: probes
            // wait for its KASLR slide (crate::kaslr). A PVH vmlinux runs at its link
            // addresses; its place is still checked for attaching clients (slide 0).
            if bzimage {
                let p = KernelPlace::new(
                    &kallsyms,
                    symbols.clone(),
                    memory.clone(),
                    Some(Arc::clone(&probes)),
                    boot,
                )
                .map_err(VmmError::Kaslr)?;
                place = Some(Arc::new(p));
            } else if pvh && config.control.is_some() {
                place = KernelPlace::new(&kallsyms, symbols.clone(), memory.clone(), None, boot)
                    .ok()
                    .map(Arc::new);
            }
            let arming = Arming {
                probes: Arc::clone(&probes),
                kernel: Arc::clone(&kernel),
                memory: memory.clone(),
                verbose: config.verbose,
            };
            if let (Some(place), true) = (&place, needs_traps && config.verbose) {
                place.defer(Box::new(|found| eprintln!("hvtrace: {}", found.describe())));
            }
            if !raw.is_empty() {
                let arming = arming.clone();
                let named = config.probes.clone();
                match &place {
                    None => arming
                        .arm(probes.new_session(), &symbols, &raw, &named, None)
                        .map(|_| ())?,
                    Some(place) => place.defer(Box::new(move |found| {
                        let id = arming.probes.new_session();
                        let _ = arming.arm_logged(id, found, &raw, &named, None);
                    })),
                }
            }
            if let (Some(plan), Some(spec)) = (planned, &config.trace) {
                let sink = LocalSink::for_spec(spec)?;
                let announcement = match &choice {
                    Some(Ok(choice)) => Some(choice.announcement()),
                    _ => None,
                };
                let start = SessionStart {
                    spec: spec.clone(),
                    catalogue: all.clone(),
                    target: target.clone(),
                    sessions: Arc::clone(&sessions),
                    slot: Arc::clone(&tracing),
                    end: EndHandle(Arc::clone(&end)),
                    announcement,
                };
                let named = plan.descriptions();
                match &place {
                    Some(place) if !plan.fbt.is_empty() => {
                        let arming = arming.clone();
                        place.defer(Box::new(move |found| {
                            let target = TraceTarget {
                                symbols: found.symbols.clone(),
                                ..start.target.clone()
                            };
                            let fbt = plan.fbt.clone();
                            let t = start.create(plan, &target, Box::new(sink));
                            let id = arming.probes.new_session();
                            let hook: Arc<dyn HitHook> = t.clone();
                            if arming.arm_logged(id, found, &fbt, &named, Some(hook)) {
                                start.begin(id, t, true);
                            }
                        }));
                    }
                    _ => {
                        let fbt = plan.fbt.clone();
                        let t = start.create(plan, &target, Box::new(sink));
                        let id = probes.new_session();
                        if !fbt.is_empty() {
                            let hook: Arc<dyn HitHook> = t.clone();
                            arming.arm(id, &symbols, &fbt, &named, Some(hook))?;
                        }
                        start.begin(id, t, false);
                    }
                }
            }
            if let Some(path) = &config.control {
                let socket = ControlSocket::bind(path)?;
                let ctx = ControlContext {
                    image: kernel.to_vec(),
                    catalogue: all,
                    target: target.clone(),
                    probes: Arc::clone(&probes),
                    sessions: Arc::clone(&sessions),
                    trap_choice: choice.unwrap_or_else(|| trap_strategy(config.irqchip)),
                    kernel_place: place.clone(),
                };
                control = Some((socket, Arc::new(ctx)));
            }
            Some(probes)
        } else {
            None
        };
        write_boot_tables(
            &memory,
            &BootInfo {
                cpu_count: config.cpus as u32,
                bsp_apic_id: 0,
                mem_size: config.mem,
                // Multiboot and Linux kernels find their command line in their own structures.
                cmdline: if multiboot || pvh || bzimage {
                    String::new()
                } else {
                    config.cmdline.clone()
                },
                tsc_khz: fds[0].get_tsc_khz().unwrap_or(0),
            },
        )?;
        if multiboot || pvh {
            boot32::write_gdt(&memory)?;
        }

        let apic = match config.irqchip {
            IrqChipMode::Emulated => Some(emulated_irqchip(&fds[0], &supported, config.cpus)?),
            _ => None,
        };
        let split_ioapic =
            (config.irqchip == IrqChipMode::Split).then(|| SplitIoapic::new(Arc::clone(&vm)));
        let irq_lines: Option<Arc<dyn IrqLines>> = match (&apic, &split_ioapic) {
            (Some(apic), _) => Some(apic.clone()),
            (None, Some(ioapic)) => Some(ioapic.clone()),
            (None, None) => Some(vm.clone()),
        };
        let dispatcher = Arc::new(Dispatcher {
            serial: SerialPort::new(IrqLine::new(irq_lines.clone()), config.serial_out),
            debug_exit: DebugExit {
                convention: if multiboot {
                    ExitConvention::Qemu
                } else {
                    ExitConvention::Value
                },
            },
            pci: PciBus::default(),
            ram: GuestRam(memory.clone()),
            end: Arc::clone(&end),
            irqchip: config.irqchip,
            irq_lines,
            apic: apic.clone(),
            split_ioapic,
            probes: probes.clone().map(|p| (p, memory.clone())),
            sessions: Arc::clone(&sessions),
            paging: probes.is_some().then(|| Arc::clone(&paging)),
            memory: memory.clone(),
            lzcnt,
            kernel_place: place.clone(),
            timeline: config.timeline.clone(),
        });
        let mut vcpus = Vec::with_capacity(config.cpus);
        for (cpu, fd) in fds.into_iter().enumerate() {
            let handler: Arc<dyn vcpu::ExitHandler> = dispatcher.clone();
            vcpus.push(VcpuHandle::spawn(cpu, fd, handler, use_sync_regs)?);
        }
        if let Some(probes) = &probes {
            probes.set_world(World::new(&vcpus));
        }
        sessions.set_vcpus(VcpuAccess {
            world: World::new(&vcpus),
            kickers: vcpus.iter().map(VcpuHandle::kicker).collect(),
        });
        if let Some(apic) = &apic {
            apic.set_event_sink(Arc::new(ApicFanOut {
                sessions: Arc::clone(&sessions),
                timeline: config.timeline.clone(),
            }));
            apic.start(vcpus.iter().map(VcpuHandle::kicker).collect())
                .map_err(VmmError::Thread)?;
        }
        Ok(Vm {
            vcpus,
            apic,
            probes,
            tracing,
            place,
            sessions,
            control,
            end,
            timeline: config.timeline.clone(),
            timeout: config.timeout,
            _vm: vm,
            memory,
        })
    }

    /// Every vCPU of this VM, for stop-the-world (`World::stop`) and `World::sync` from any
    /// thread. It stays valid after the run: exited vCPUs count as stopped.
    pub fn world(&self) -> World {
        World::new(&self.vcpus)
    }

    /// Guest RAM (a cheap clone that keeps the mapping alive), for reading guest state from
    /// outside while the VM runs.
    pub fn memory(&self) -> GuestMemoryMmap {
        self.memory.clone()
    }

    /// The armed probes (their hit counts stay readable after the run).
    pub fn probes(&self) -> Option<Arc<ProbeSet>> {
        self.probes.clone()
    }

    /// A handle that ends the run from another thread.
    pub fn end_handle(&self) -> EndHandle {
        EndHandle(Arc::clone(&self.end))
    }

    /// Runs the VM until the guest exits, a vCPU faults, or the timeout expires.
    pub fn run(mut self) -> Result<Outcome, VmmError> {
        if let Some(t) = self.tracing.get() {
            let end = self.end_handle();
            t.start(Box::new(move || end.end()), self.sessions.vcpus());
        }
        let control = self.control.take().map(|(socket, ctx)| socket.serve(ctx));
        for v in &self.vcpus {
            v.resume();
        }
        if let (Some(place), Some(bsp)) = (&self.place, self.vcpus.first()) {
            place.start_polling(bsp.kicker());
        }
        let outcome = match self.end.wait(self.timeout) {
            Some(Ending::Exit(status)) => Outcome::GuestExit(status),
            Some(Ending::Stopped) => Outcome::Stopped,
            Some(Ending::Fatal(report)) => Outcome::Fault(Box::new(self.fault_details(report))),
            None => Outcome::Timeout {
                after: self.timeout.unwrap_or_default(),
                vcpus: self.stop_all(),
            },
        };
        if let Some(place) = &self.place {
            place.stop();
            if place.pending() {
                eprintln!(
                    "hvtrace: probes were never armed: the kernel's KASLR slide was not found (vCPU 0 never loaded idt_table; the bzImage was still decompressing or in its earliest boot)"
                );
            }
        }
        let cpus = self.vcpus.len();
        for v in self.vcpus {
            if let Err(e) = v.join(STOP_BOUND) {
                eprintln!("hvtrace: {e}");
            }
        }
        if let (Some(apic), Some(t)) = (&self.apic, &self.timeline) {
            for cpu in 0..cpus {
                t.record_final_apic(cpu, apic.snapshot(cpu));
            }
        }
        if let Some(apic) = &self.apic {
            apic.stop();
        }
        if let Some(control) = control {
            control.shutdown();
        }
        if let Some(probes) = &self.probes {
            probes.disarm_all(&self.memory);
        }
        // The guest's unfinished last line goes out before END's output.
        crate::console::settle_stdout();
        let trace_exit = self.tracing.get().and_then(|t| t.finish());
        let outcome = match (outcome, trace_exit) {
            (Outcome::Stopped, Some(status)) => Outcome::TraceExit(status as u8),
            (outcome, _) => outcome,
        };
        Ok(outcome)
    }

    /// Pauses every vCPU (kick first, then wait for each, bounded) and reports their state.
    fn stop_all(&self) -> Vec<VcpuStatus> {
        let states: Vec<_> = self.vcpus.iter().map(|v| v.state().0).collect();
        for v in &self.vcpus {
            v.request_pause();
        }
        self.vcpus
            .iter()
            .zip(states)
            .map(|(v, state)| {
                let not_stopped = v.wait_paused(STOP_BOUND).err().map(|e| e.to_string());
                let snapshot = v.state().1;
                VcpuStatus {
                    cpu: v.cpu(),
                    state,
                    snapshot,
                    not_stopped,
                }
            })
            .collect()
    }

    fn fault_details(&self, report: vcpu::FatalReport) -> FaultDetails {
        let insn = match &report.fatal {
            vcpu::Fatal::InternalError { insn, .. } if !insn.is_empty() => insn.clone(),
            _ => report
                .rip_gpa
                .map(|gpa| read_up_to(&self.memory, gpa, 15))
                .unwrap_or_default(),
        };
        let decoded = decode_one(&insn, report.bitness, report.rip);
        let (insn, asm) = match decoded {
            Some((len, asm)) => (insn[..len].to_vec(), Some(asm)),
            None => (insn, None),
        };
        FaultDetails { report, insn, asm }
    }
}

/// Reads up to `len` bytes at `gpa`, stopping at the end of RAM.
fn read_up_to(memory: &GuestMemoryMmap, gpa: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for i in 0..len as u64 {
        match memory.read_obj::<u8>(GuestAddress(gpa + i)) {
            Ok(b) => out.push(b),
            Err(_) => break,
        }
    }
    out
}

fn register_memory(vm: &VmFd, memory: &GuestMemoryMmap) -> Result<(), VmmError> {
    for (slot, region) in memory.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|source| VmmError::GuestWrite {
                what: "the memory region table",
                source,
            })?;
        let region_desc = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the host range is a live anonymous mapping owned by `memory`, which the `Vm`
        // keeps alive for as long as the VM fd (and so the KVM slot) exists.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// `IA32_TIME_STAMP_COUNTER`.
const MSR_TSC: u32 = 0x10;

/// Builds hvtrace's own APICs, with their clock anchored at vCPU 0's TSC.
fn emulated_irqchip(
    bsp: &VcpuFd,
    cpuid: &kvm_bindings::CpuId,
    cpus: usize,
) -> Result<Arc<EmulatedIrqchip>, VmmError> {
    let tsc_khz = bsp.get_tsc_khz().map_err(kvm("KVM_GET_TSC_KHZ"))?;
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_TSC,
        ..Default::default()
    }])
    .map_err(|_| VmmError::MissingCapability("room for one MSR in KVM_GET_MSRS"))?;
    bsp.get_msrs(&mut msrs)
        .map_err(kvm("KVM_GET_MSRS(IA32_TSC)"))?;
    let guest_tsc = msrs.as_slice()[0].data;
    let tsc_hz = u64::from(tsc_khz) * 1000;
    let phys_addr_bits = cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map_or(36, |e| (e.eax & 0xff) as u8);
    let config = apic::ApicConfig {
        tsc_hz,
        phys_addr_bits: phys_addr_bits.clamp(32, 52),
        ..apic::ApicConfig::default()
    };
    EmulatedIrqchip::new(cpus, GuestClock::anchored(guest_tsc, tsc_hz), &config)
        .map_err(VmmError::EmulatedApic)
}

/// Puts the bootstrap processor at the image's entry, in the state its protocol specifies.
fn setup_bsp(fd: &VcpuFd, loaded: &LoadedImage) -> Result<(), VmmError> {
    let mut sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let regs = match loaded.protocol {
        BootProtocol::Native => {
            long_mode_sregs(&mut sregs);
            entry_regs(loaded.entry)
        }
        BootProtocol::Multiboot { mbi } => {
            boot32::protected_mode_sregs(&mut sregs);
            boot32::entry_regs(loaded.entry, mbi)
        }
        BootProtocol::Linux64 { boot_params } => {
            linux_long_mode_sregs(&mut sregs);
            linux64_entry_regs(loaded.entry, boot_params)
        }
        BootProtocol::Pvh { start_info } => {
            boot32::protected_mode_sregs(&mut sregs);
            boot32::pvh_entry_regs(loaded.entry, start_info)
        }
    };
    fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    fd.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))
}
