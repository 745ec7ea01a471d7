//! The tracer: the D-like language, probe providers, symbol and type sources, trap placement,
//! per-vCPU event buffers and aggregations.
//!
//! It never issues ioctls itself; the VMM gives it registers, memory and stops.
//!
//! - [`symbols`]: function symbols of an image (ELF `.symtab`, or the kernel's kallsyms),
//!   glob lookup.
//! - [`bzimage`]: a Linux bzImage's setup header and its zstd payload, decompressed to the
//!   kernel ELF that symbols and types are read from.
//! - [`btf`]: the kernel's BTF types: function prototypes, struct layouts, sizes.
//! - [`traps`]: instruction boundaries and return sites of a function, trap kinds, the trap
//!   table with the shadow of original bytes, and emulation of displaced instructions.
//! - [`pagewalk`]: guest-virtual to guest-physical translation and bounded guest reads.
//! - [`probes`]: the probe catalogue of an image (`hvtrace list`) and description matching.
//! - [`lang`]: the D language subset: parse, check, compile to a typed IR; probe descriptions.
//! - [`runtime`]: clause evaluation against a [`runtime::ProbeContext`], per-vCPU record
//!   buffers and aggregations, the consumer that folds and prints them (text and JSON).

pub mod btf;
pub mod bzimage;
pub mod lang;
pub mod pagewalk;
pub mod probes;
pub mod runtime;
pub mod symbols;
pub mod traps;
