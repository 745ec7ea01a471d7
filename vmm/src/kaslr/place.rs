//! Finding a bzImage kernel's slide while the VM runs, and running what waited for it.
//!
//! [`KernelPlace`] is shared by the exit dispatcher, a poller thread and the control socket.
//! While something waits for the slide (deferred arming, an attaching client), vCPU 0 owes
//! its kernel state: the poller kicks it every [`POLL_SLOW`] while it runs below the kernel's
//! high mapping (the decompressor), every [`POLL`] once it runs in the kernel, and on its kicked return from
//! `KVM_RUN` the vCPU thread hands over its system registers and `MSR_LSTAR`
//! (`ExitHandler::kernel_state`; when nothing waits, that check is one atomic load per kick
//! and nothing else). Once [`find_slide`] answers, the probes' address map is set, the
//! kernel's kallsyms are decoded from guest memory at the slid address and compared with the
//! payload's, and the waiting jobs run on that vCPU's thread (arming stops the world; the
//! vCPU counts itself as stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracer::symbols::kallsyms::{ImageKallsyms, Kallsyms};
use tracer::symbols::ElfSymbols;
use vcpu::{KernelState, Kicker};
use vm_memory::GuestMemoryMmap;

use super::{find_slide, Anchors, Slide, KERNEL_MAP};
use crate::probes::{AddressMap, ProbeSet};
use crate::trace::paging::{read, Translation};

/// How often vCPU 0 is asked for its state while something waits for the slide and it runs
/// below the kernel's high mapping (the decompressor). Each ask is a kick out of `KVM_RUN`
/// and two ioctls; on this project's software KVM asking every millisecond slowed the
/// decompressor more than five times, every 50 ms costs nothing measurable.
pub const POLL_SLOW: Duration = Duration::from_millis(50);
/// How often once vCPU 0 runs in the kernel's high mapping: the kernel loads `idt_table` and
/// reaches `start_kernel` soon after (tens of milliseconds on a software KVM).
pub const POLL: Duration = Duration::from_millis(1);

/// What is known once the slide is found.
pub struct Found {
    /// The slide and the kernel's segments.
    pub slide: Slide,
    /// The kernel's functions at their run addresses.
    pub symbols: ElfSymbols,
    /// When it was found, from the VM's start.
    pub after: Duration,
    /// The kallsyms decoded from guest memory against the payload's, in words.
    pub kallsyms_check: String,
}

impl Found {
    /// The `-v` line that says where the kernel is and how that was found.
    pub fn describe(&self) -> String {
        format!(
            "KASLR slide {:#x} (kernel text at physical {:#x}) from the IDT{} after {:.1} s; symbols: the image's kallsyms (a bzImage's payload), slid; {}",
            self.slide.virt,
            self.slide.physical_base().unwrap_or(0),
            if self.slide.lstar_checked {
                " and MSR_LSTAR"
            } else {
                " and its gate"
            },
            self.after.as_secs_f64(),
            self.kallsyms_check
        )
    }
}

/// A job that waits for the slide.
pub type Job = Box<dyn FnOnce(&Found) + Send>;

/// A bzImage kernel's place, found while the VM runs.
pub struct KernelPlace {
    anchors: Anchors,
    symbols: ElfSymbols,
    /// The image's kallsyms (shared with the run's symbol table and kernel types).
    kallsyms: Arc<Kallsyms>,
    memory: GuestMemoryMmap,
    probes: Option<Arc<ProbeSet>>,
    start: Instant,
    /// vCPU 0 owes its state.
    wanted: AtomicBool,
    /// vCPU 0 was seen running in the kernel's high mapping (poll fast from then on).
    in_kernel: AtomicBool,
    /// The poller must stop (the VM ends).
    stop: AtomicBool,
    found: OnceLock<Result<Found, String>>,
    jobs: Mutex<Vec<Job>>,
    signal: (Mutex<()>, Condvar),
}

impl KernelPlace {
    /// The place of the kernel ELF whose kallsyms are `kallsyms` (the bzImage's payload, whose
    /// functions are `symbols`) in `memory`; `probes` get its address map once it is known.
    /// The tables are decoded only if the run has not decoded them already.
    pub fn new(
        kallsyms: &ImageKallsyms<'_>,
        symbols: ElfSymbols,
        memory: GuestMemoryMmap,
        probes: Option<Arc<ProbeSet>>,
        start: Instant,
    ) -> Result<KernelPlace, String> {
        let elf = kallsyms.image();
        let kallsyms = Arc::clone(kallsyms.get().map_err(|e| e.to_string())?);
        let anchors = Anchors::new(elf, &kallsyms).map_err(|e| e.to_string())?;
        Ok(KernelPlace {
            anchors,
            symbols,
            kallsyms,
            memory,
            probes,
            start,
            wanted: AtomicBool::new(false),
            in_kernel: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            found: OnceLock::new(),
            jobs: Mutex::new(Vec::new()),
            signal: (Mutex::new(()), Condvar::new()),
        })
    }

    /// Whether `cpu` owes its kernel state (vCPU 0 while something waits).
    pub fn wants(&self, cpu: usize) -> bool {
        cpu == 0 && self.wanted.load(Ordering::Relaxed)
    }

    /// The answer, once there is one.
    pub fn found(&self) -> Option<&Result<Found, String>> {
        self.found.get()
    }

    /// Runs `job` once the slide is known (now, if it is); a failed search drops it.
    pub fn defer(&self, job: Job) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match self.found.get() {
            Some(Ok(found)) => {
                drop(jobs);
                job(found);
            }
            Some(Err(_)) => {}
            None => {
                jobs.push(job);
                self.wanted.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Whether jobs wait for the slide.
    pub fn pending(&self) -> bool {
        self.wanted.load(Ordering::SeqCst)
    }

    /// vCPU 0's state after a kick: finds the slide, or keeps waiting.
    pub fn observe(&self, state: &KernelState) {
        if self.found.get().is_some() {
            return;
        }
        if state.regs.rip >= KERNEL_MAP {
            self.in_kernel.store(true, Ordering::Relaxed);
        }
        let result = match find_slide(&self.anchors, &state.sregs, state.lstar, &self.memory) {
            Ok(None) => return,
            Ok(Some(slide)) => Ok(self.complete(slide, Translation::of(&state.sregs))),
            Err(e) => Err(e.to_string()),
        };
        let jobs = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if self.found.set(result).is_err() {
                return;
            }
            self.wanted.store(false, Ordering::SeqCst);
            std::mem::take(&mut *jobs)
        };
        match self.found.get() {
            Some(Ok(found)) => jobs.into_iter().for_each(|job| job(found)),
            Some(Err(why)) if !jobs.is_empty() => {
                eprintln!("hvtrace: probes not armed: {why}")
            }
            _ => {}
        }
        let _guard = self.signal.0.lock();
        self.signal.1.notify_all();
    }

    fn complete(&self, slide: Slide, translation: Translation) -> Found {
        if let Some(probes) = &self.probes {
            probes.set_address_map(AddressMap::new(slide.mappings.clone()));
        }
        let kallsyms_check = self.kallsyms_from_memory(slide.virt, translation);
        Found {
            symbols: self.symbols.slid(slide.virt),
            slide,
            after: self.start.elapsed(),
            kallsyms_check,
        }
    }

    /// Decodes the kallsyms tables from guest memory at their slid address and compares
    /// them with the payload's, in words.
    fn kallsyms_from_memory(&self, slide: u64, translation: Translation) -> String {
        let l = self.kallsyms.layout();
        let n = self.kallsyms.symbols().len() as u64;
        let starts = [
            l.num_syms_at,
            l.names,
            l.markers,
            l.token_table,
            l.token_index,
            l.offsets,
        ];
        let (Some(&lo), Some(&hi)) = (starts.iter().min(), starts.iter().max()) else {
            return "kallsyms layout unknown".into();
        };
        // The last table is at most 4 bytes per symbol (offsets), then the relative base.
        let len = (hi - lo) + 4 * n + 0x1000;
        let mut bytes = vec![0u8; len as usize];
        let base = lo.wrapping_add(slide);
        if !read(&self.memory, translation, base, &mut bytes) {
            return format!("guest memory's kallsyms at {base:#x} are not readable");
        }
        let live = match Kallsyms::from_region(&bytes, base) {
            Ok(k) => k,
            Err(e) => return format!("guest memory's kallsyms do not decode: {e}"),
        };
        let (a, b) = (self.kallsyms.symbols(), live.symbols());
        let differ = a
            .iter()
            .zip(b)
            .filter(|(p, m)| {
                p.name != m.name
                    || (m.address != p.address.wrapping_add(slide) && m.address != p.address)
            })
            .count();
        if a.len() == b.len() && differ == 0 {
            format!(
                "guest memory's kallsyms ({} symbols) equal the image's",
                b.len()
            )
        } else {
            format!(
                "guest memory's kallsyms differ from the image's: {} against {} symbols, {differ} differ",
                b.len(),
                a.len()
            )
        }
    }

    /// Kicks vCPU 0 every [`POLL_SLOW`], then [`POLL`] once it runs in the kernel, from a
    /// thread while jobs wait, until the slide is found
    /// or [`KernelPlace::stop`].
    pub fn start_polling(self: &Arc<Self>, kicker: Kicker) {
        if !self.pending() {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kaslr-poll".into())
            .spawn(move || {
                while me.pending() && !me.stop.load(Ordering::SeqCst) {
                    kicker.kick();
                    std::thread::sleep(if me.in_kernel.load(Ordering::Relaxed) {
                        POLL
                    } else {
                        POLL_SLOW
                    });
                }
            });
        if let Err(e) = spawned {
            eprintln!("hvtrace: cannot start the KASLR poller: {e}");
        }
    }

    /// Stops the poller (the VM ends).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The slide now, asking vCPU 0 (kicked every [`POLL`]) for at most `bound`: for a client
    /// attaching to a running kernel.
    pub fn wait(&self, kicker: &Kicker, bound: Duration) -> Result<&Found, String> {
        let deadline = Instant::now() + bound;
        loop {
            match self.found.get() {
                Some(Ok(found)) => return Ok(found),
                Some(Err(why)) => return Err(why.clone()),
                None => {}
            }
            if Instant::now() >= deadline {
                self.wanted
                    .store(!self.jobs_empty_or_poisoned(), Ordering::SeqCst);
                return Err(format!(
                    "the kernel's KASLR slide is not known after {bound:?}: vCPU 0 has not loaded idt_table yet (still decompressing or in early boot), or does not leave the guest to be asked"
                ));
            }
            self.wanted.store(true, Ordering::SeqCst);
            kicker.kick();
            let guard = self.signal.0.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.signal.1.wait_timeout(guard, POLL);
        }
    }

    fn jobs_empty_or_poisoned(&self) -> bool {
        self.jobs.lock().map(|j| j.is_empty()).unwrap_or(true)
    }
}
