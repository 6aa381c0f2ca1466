//! Any bytes as a ring-buffer event: decoded or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = netflow::decode::Event::decode(data, &[4789, 8472]);
});
