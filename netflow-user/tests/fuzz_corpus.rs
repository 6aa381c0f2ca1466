//! The fuzz targets over their committed corpus (`fuzz/corpus/TARGET/`,
//! seeded by `fuzz/make-corpus.py` and grown by `cargo fuzz run`): every
//! input is decoded, correlated or exported without a panic. CI runs this in
//! both builds; fuzzing itself runs with cargo-fuzz.
use std::path::Path;

#[path = "../fuzz/bodies.rs"]
mod bodies;

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failed = Vec::new();
    for (target, body) in bodies::TARGETS {
        let dir = corpus.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 4,
            "{target}: corpus of {} inputs",
            files.len()
        );
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failed.push(format!("{target}: {}", f.display()));
            }
        }
    }
    assert!(failed.is_empty(), "panicked on: {failed:#?}");
}

#[test]
fn the_pipeline_seeds_are_real_runs() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pipeline/outcomes");
    let packets = bodies::pipeline_packets(&std::fs::read(seed).unwrap());
    assert!(packets > 10, "{packets} packets");
}

#[test]
fn event_runs_split_as_the_targets_read_them() {
    let mut data = Vec::new();
    data.extend_from_slice(&3u16.to_le_bytes());
    data.extend_from_slice(b"abc");
    data.extend_from_slice(&0u16.to_le_bytes());
    data.extend_from_slice(&9u16.to_le_bytes());
    data.extend_from_slice(b"xy");
    assert_eq!(
        bodies::events(&data),
        vec![Some(&b"abc"[..]), None, Some(&b"xy"[..])]
    );
}
