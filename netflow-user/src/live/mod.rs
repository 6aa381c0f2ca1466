//! The kernel side: what runs only on a node, as root. Loading and attaching
//! the kernel programs ([`probes`]), what the running kernel offers
//! ([`kernel`]), turning selectors into the kernel's packet selection
//! ([`select`], pods over CRI), reading names off the node ([`names`]), and
//! the live run that drains the ring buffer into the pipeline ([`trace`]).
pub mod agent;
pub mod demo;
pub mod kernel;
pub mod names;
pub mod probes;
pub mod ruletrace;
pub mod select;
pub mod trace;
