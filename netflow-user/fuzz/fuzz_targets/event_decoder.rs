//! Any bytes as a ring-buffer event: decoded or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = netflow::decode::Event::try_from(data) {
        let _ = ev.packet(&[4789, 8472]);
    }
});
