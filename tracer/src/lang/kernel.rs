//! What the checker knows about the traced image: for a Linux kernel, its BTF (for `args[N]`
//! and `->member`) and where the current task lives (for `curthread`, `execname`, `pid`,
//! `tid` and task-keyed `self->`); and which probes each clause matches (for `args[N]`).
//!
//! [`Kernel::from_image`] reads both from a vmlinux without debug files: the `.BTF` section,
//! and the per-CPU symbol `pcpu_hot` from kallsyms (x86-64 per-CPU symbols are offsets from
//! the per-CPU base, which is the GS base in kernel mode) with `current_task`'s offset in
//! `struct pcpu_hot` from BTF. [`Kernel::from_image_with`] takes the kallsyms a run has already
//! decoded for its symbol table instead of decoding them again.

use crate::btf::{Btf, BtfError, TypeId};
use crate::probes::Probe;
use crate::symbols::kallsyms::ImageKallsyms;

/// A Linux kernel's types and the location of its current-task pointer.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel's BTF.
    pub btf: Btf,
    /// Where the current task pointer is, or why it could not be found.
    pub current: Result<CurrentTask, String>,
}

/// Where a CPU's current `task_struct *` is: at `percpu_offset` from the per-CPU base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentTask {
    /// Offset of the pointer from the per-CPU base (the per-CPU symbol plus the member).
    pub percpu_offset: u64,
    /// The BTF ID of `struct task_struct`.
    pub task_struct: TypeId,
}

impl Kernel {
    /// Reads the kernel's BTF and finds its current task from `image` (a vmlinux). An image
    /// without a `.BTF` section is an error ([`BtfError::NoBtf`]): it is not a kernel this
    /// module can type.
    pub fn from_image(image: &[u8]) -> Result<Self, BtfError> {
        Self::from_image_with(&ImageKallsyms::new(image))
    }

    /// [`Kernel::from_image`] for the image of `kallsyms`, whose tables are decoded only if
    /// no other user has decoded them yet (the symbol table of the same run usually has), and
    /// only if the image has BTF.
    pub fn from_image_with(kallsyms: &ImageKallsyms<'_>) -> Result<Self, BtfError> {
        let btf = Btf::from_elf(kallsyms.image())?;
        let current = match kallsyms.get() {
            Ok(k) => current_task(&btf, |name| k.by_name(name).first().map(|s| s.address)),
            Err(e) => Err(format!("the kernel's kallsyms cannot be read: {e}")),
        };
        Ok(Kernel { btf, current })
    }

    /// A kernel from its BTF and a way to look symbols up by name (for tests and for images
    /// whose symbols come from elsewhere).
    pub fn new(btf: Btf, symbol: impl Fn(&str) -> Option<u64>) -> Self {
        let current = current_task(&btf, symbol);
        Kernel { btf, current }
    }
}

/// Finds `pcpu_hot.current_task` (6.2 and newer) or the older per-CPU `current_task`.
fn current_task(btf: &Btf, symbol: impl Fn(&str) -> Option<u64>) -> Result<CurrentTask, String> {
    let task_struct = btf
        .struct_by_name("task_struct")
        .ok_or("BTF has no struct task_struct")?;
    if let (Some(base), Some(layout)) = (symbol("pcpu_hot"), btf.struct_layout("pcpu_hot")) {
        // `current_task` sits in an anonymous union of `struct pcpu_hot`.
        let m = crate::lang::check::members::find_member(btf, layout.id, "current_task")
            .ok_or("struct pcpu_hot has no member current_task")?;
        return Ok(CurrentTask {
            percpu_offset: base.wrapping_add(m.bit_offset / 8),
            task_struct,
        });
    }
    match symbol("current_task") {
        Some(offset) => Ok(CurrentTask {
            percpu_offset: offset,
            task_struct,
        }),
        None => Err("kallsyms has neither pcpu_hot nor current_task".into()),
    }
}

/// What a program is compiled against: the kernel (if the image is one, else why not) and
/// the image's probes (to type `args[N]` from the functions a clause probes).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The kernel's types, or why there are none ("this image has no .BTF section ...").
    pub kernel: Result<&'a Kernel, &'a str>,
    /// Every probe of the image.
    pub probes: &'a [Probe],
}

impl Target<'static> {
    /// No image: programs compile without `args`, `curthread` and the other Linux built-ins.
    pub fn none() -> Self {
        Target {
            kernel: Err("no kernel image was given to compile against"),
            probes: &[],
        }
    }
}
