//! What netflow learns from the running kernel.
pub mod btf;
pub mod cgroup;
pub mod clock;
pub mod preflight;
