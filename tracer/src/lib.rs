//! The tracer: the D-like language, probe providers, symbol and type sources, trap placement,
//! per-vCPU event buffers and aggregations.
//!
//! Nothing lives here yet: the foundation (guests, VMM, vCPU threads) comes first, and the
//! tracer work fills this crate. It never issues ioctls itself; it asks the `vcpu` layer for
//! registers, memory and stops.
