//! netflow: follow packets across a Kubernetes node with eBPF.
//!
//! The path of one event, one folder per step:
//!
//! ```text
//! live (kernel programs, selection, pods) → ring buffer
//!   → decode (bytes → typed event with its packet parsed)
//!   → correlate (events → packet timelines → connections)
//!   → output (one view model; text, JSON, pcapng, dashboard)
//! ```
//!
//! [`record`] writes and reads the events of a run; [`replay`] feeds a
//! recording through the same [`pipeline`] as a live run.
//!
//! The layer rule: everything but [`live`] is the offline core and never
//! imports `live` (checked by `tests/layers.rs`); `live` exists only with the
//! `live` feature (the default), so `--no-default-features` builds a
//! `netflow` that reads recordings anywhere, without aya or a container
//! runtime client.
pub mod budget;
pub mod correlate;
pub mod decode;
#[cfg(feature = "live")]
pub mod live;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod replay;
