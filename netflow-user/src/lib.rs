//! netflow: follow packets across a Kubernetes node with eBPF.
//!
//! The path of one event, one module per step:
//! [`probes`] (kernel programs) → ring buffer → [`decode`] (+ [`packet`]) →
//! [`correlate`] → [`output`]. [`select`] turns selectors into the kernel's
//! packet selection; [`kernel`] reads what the running kernel offers.
pub mod connections;
pub mod correlate;
pub mod cri;
pub mod dashboard;
pub mod decode;
pub mod demo;
pub mod diagnose;
pub mod expiry;
pub mod export;
pub mod kernel;
pub mod names;
pub mod netfilter;
pub mod output;
pub mod packet;
pub mod pipeline;
pub mod pod;
pub mod probes;
pub mod record;
pub mod replay;
pub mod select;
pub mod trace;
