//! The shape of the code, checked: the offline core (everything in
//! `netflow-user/src` but `live/`) never imports the live side; no two files
//! of netflow-user or of the kernel programs import each other, directly or
//! round a circle; and the build without the `live` feature depends on
//! neither aya nor a container runtime client.
//!
//! `cargo test -p netflow-user --test layers` runs these checks.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, by module path (`correlate::filter`).
fn modules(dir: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(base).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                let src = std::fs::read_to_string(&p).unwrap();
                out.insert(parts.join("::"), src);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let close = tree.rfind('}').unwrap_or(tree.len());
    if close < open {
        // Not a use tree (the word "use" in a string or a comment).
        return vec![tree];
    }
    let prefix = &tree[..open];
    let inner = &tree[open + 1..close];
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| expand(&format!("{prefix}{i}")))
        .collect()
}

/// The paths a file names: its `use` trees and inline `crate::`/`super::` paths.
fn paths(src: &str) -> Vec<String> {
    // A file's own `mod tests` (its `super` is the file) is not its shape.
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    let code: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let at_word = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let end = rest[i..].find(';').map(|e| i + e).unwrap_or(rest.len());
        if at_word {
            out.extend(expand(&rest[i + 4..end]));
        }
        rest = &rest[i + 4..];
    }
    for start in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(start) {
            let tail = &rest[i..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            // `crate::a::{...}` is a use tree, expanded above.
            if !tail[len..].starts_with('{') {
                out.push(tail[..len].trim_end_matches(':').to_string());
            }
            rest = &rest[i + start.len()..];
        }
    }
    out
}

/// Module a path points into, from the module `from`: the longest known prefix.
fn target(path: &str, from: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from.is_empty() {
        vec![]
    } else {
        from.split("::").collect()
    };
    match segs.first().copied() {
        Some("crate") => {
            segs.remove(0);
            base.clear();
        }
        Some("super") => {
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
        }
        Some("self") => {
            segs.remove(0);
        }
        // `use child::x` in a module that declares `mod child`.
        Some(first) if known.contains_key(&format!("{from}::{first}")) => {}
        _ => return None,
    }
    let full: Vec<&str> = base.into_iter().chain(segs).collect();
    (0..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// File-level import edges (a module's own children and ancestors aside:
/// `mod x;` is a declaration, and a child naming its parent is its context).
fn edges(known: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, src) in known {
        let set = g.entry(m.clone()).or_default();
        for p in paths(src) {
            if let Some(t) = target(&p, m, known) {
                if &t != m {
                    set.insert(t);
                }
            }
        }
    }
    g
}

/// Circles of the import graph (Tarjan's strongly connected components).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                c.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_offline_core_never_imports_the_live_side() {
    let known = modules(&root().join("netflow-user/src"));
    assert!(known.contains_key("live::probes") && known.contains_key("correlate"));
    let g = edges(&known);
    let wrong: Vec<String> = g
        .iter()
        .filter(|(m, _)| !m.starts_with("live") && m.as_str() != "")
        .flat_map(|(m, ts)| {
            ts.iter()
                .filter(|t| t.starts_with("live"))
                .map(move |t| format!("{m} -> {t}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "offline core imports the live side: {wrong:?}"
    );
    // The check sees imports at all: the live side does import the core.
    assert!(
        g["live::trace"].contains("pipeline"),
        "{:?}",
        g["live::trace"]
    );
}

#[test]
fn no_import_circles() {
    for dir in ["netflow-user/src", "netflow-ebpf/src"] {
        let known = modules(&root().join(dir));
        let g = edges(&known);
        assert!(
            g.values().map(BTreeSet::len).sum::<usize>() > 10,
            "{dir}: {g:?}"
        );
        let c = circles(&g);
        assert!(c.is_empty(), "{dir}: import circles {c:?}");
    }
    // And the check finds one when there is one.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
}

#[test]
fn use_trees_expand() {
    assert_eq!(
        expand("crate::{a::{b, c::D}, e}"),
        vec!["crate::a::b", "crate::a::c::D", "crate::e"]
    );
}

#[test]
fn the_build_without_live_has_no_kernel_side() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "-p",
            "netflow-user",
            "--no-default-features",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("etherparse"), "{tree}");
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for banned in [
        "aya",
        "aya-obj",
        "aya-build",
        "tonic",
        "k8s-cri",
        "tokio",
        "netflow-ebpf",
    ] {
        assert!(
            !crates.contains(banned),
            "{banned} in the offline build:\n{tree}"
        );
    }
}
