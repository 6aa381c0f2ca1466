//! Any bytes as a recording: the reader returns records or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("netflow-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.nflw");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut r) = netflow::record::Reader::open(&path) {
        let mut n = 0;
        while let Ok(Some(_)) = r.next_record() {
            n += 1;
            if n > 100_000 {
                break;
            }
        }
    }
});
