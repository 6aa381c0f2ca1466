//! The agent's events mode: the flows of drops and failed connects, handed
//! from the pipeline to the probes to be followed hop by hop for a while.
use crate::{
    live::{probes::Probes, trace::TraceOptions},
    pipeline::Pipeline,
};

/// The events mode: each flow that failed since the last poll is followed
/// hop by hop for a while (its next packets, a client's retries, get their
/// whole path); what the bounds skipped is counted.
pub(crate) fn failures(probes: &mut Probes, pipe: &mut Pipeline, opts: &TraceOptions) {
    let now = crate::live::kernel::clock::monotonic_ns();
    let failures = pipe.take_failures();
    if !failures.is_empty() {
        let candidates = opts
            .follow_netns
            .as_ref()
            .and_then(|l| l.lock().ok().map(|l| l.clone()))
            .unwrap_or_default();
        for (t, netns) in failures {
            probes.follow(&t, netns, &candidates, now);
        }
    }
    let (followed, skipped, _) = probes.follows(now);
    pipe.follows(followed, skipped);
}
