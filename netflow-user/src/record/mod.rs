//! Recordings: every raw event of a run, with what is needed to interpret it
//! offline (namespace and pod names, drop-reason names, the kernel symbols
//! used, kernel version, clock offset), so `netflow replay` reproduces the
//! live run's timelines on any machine without root.
//!
//! Format (version 3; version 2 had no kind 8, version 1 no kind 7, and they read the same): the magic `NFLOWREC`, a little-endian u16 format
//! version and u16 zero, then a gzip stream of records
//! `[kind u8][length u32 LE][payload]`:
//!
//! | kind | payload |
//! | --- | --- |
//! | 1 meta | JSON [`Meta`], first |
//! | 2 names | JSON [`NamesSnapshot`], whenever names change |
//! | 3 event | the event exactly as the kernel wrote it (see `decode`) |
//! | 4 tick | u64 LE: CLOCK_MONOTONIC when the live run completed timelines |
//! | 5 symbol | JSON `[address, "function+0xoff"]` |
//! | 6 end | JSON [`End`], last: its absence means the file was cut short |
//! | 7 counted | JSON [`CountedRecord`]: packets the kernel only counted (guardrails) for a connection tuple, as the live run read them, before the tick that reported the connection |
//! | 8 evidence | JSON [`Answered`]: a question the cause finder asked the node about a failure and its answer, when it changed, before the tick that reported the failure |
//!
//! The stream is flushed at every tick, so a tracer that is killed leaves a
//! file that replays up to its last complete record.
use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, BufWriter, ErrorKind, Read, Write},
    path::Path,
};

use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"NFLOWREC";
pub const FORMAT_VERSION: u16 = 3;
/// Largest record accepted (a corrupt length must not allocate gigabytes).
const MAX_RECORD: u32 = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub netflow_version: String,
    pub kernel: String,
    pub hostname: String,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC at start, to turn event times into dates.
    pub realtime_offset_ns: i128,
    pub summary: String,
    pub probes: Vec<String>,
    pub idle_ns: u64,
    pub vxlan_ports: Vec<u16>,
    /// How long ended packets waited for rule trace events (0 or absent:
    /// no rule tracing in the run).
    #[serde(default)]
    pub rule_hold_ns: u64,
    /// Ports of DNS servers besides 53 (absent before DNS decoding).
    #[serde(default)]
    pub dns_ports: Vec<u16>,
    /// CLOCK_MONOTONIC when the run started (0: recorded before it was kept).
    #[serde(default)]
    pub started_ns: u64,
    /// The probes as the start record says them (`probes` has them as
    /// lines; empty: recorded before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_list: Vec<netflow_schema::Probe>,
}

pub use crate::correlate::cause::evidence::Answered;
pub use crate::decode::names::NamesSnapshot;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct End {
    pub events: u64,
    pub lost: u64,
    /// Selected packets only counted by the guardrails (absent before format 2).
    #[serde(default)]
    pub sampled: u64,
    /// CLOCK_MONOTONIC when the run ended (0: recorded before it was kept).
    #[serde(default)]
    pub ended_ns: u64,
}

/// Kind 7: the only-counted packets of one connection tuple.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CountedRecord {
    pub proto: u8,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub counted: crate::correlate::connections::Counted,
}

impl CountedRecord {
    pub fn new(
        t: &crate::decode::packet::Tuple,
        counted: crate::correlate::connections::Counted,
    ) -> Self {
        Self {
            proto: t.proto.number(),
            src: t.src,
            dst: t.dst,
            sport: t.sport,
            dport: t.dport,
            counted,
        }
    }

    pub fn tuple(&self) -> crate::decode::packet::Tuple {
        crate::decode::packet::Tuple {
            proto: crate::decode::packet::Proto::from_ip_number(self.proto),
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Meta(Meta),
    Names(NamesSnapshot),
    Event(Vec<u8>),
    Tick(u64),
    Symbol(u64, String),
    End(End),
    Counted(CountedRecord),
    Evidence(Answered),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is not a netflow recording (no NFLOWREC header)")]
    NotOurs(String),
    #[error("{path} was written by a newer netflow (format {found}); this netflow reads format {FORMAT_VERSION}: upgrade netflow")]
    FutureVersion { path: String, found: u16 },
    #[error("{path} is corrupted at record {record}: {what}")]
    Corrupt {
        path: String,
        record: u64,
        what: String,
    },
}

pub struct Writer {
    out: GzEncoder<BufWriter<File>>,
    symbols: HashMap<u64, ()>,
}

/// Create (or reuse) `path` for a file that holds packet payload: mode
/// 0600, never through a symlink, and never truncating a file someone else
/// owns or that is not a regular file.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other("it is a symbolic link: refusing to write through it")
            } else {
                e
            }
        })?;
    let m = f.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if m.uid() != me {
        return Err(std::io::Error::other(format!(
            "it belongs to another user (uid {}): refusing to overwrite it",
            m.uid()
        )));
    }
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.set_len(0)?;
    Ok(f)
}

impl Writer {
    pub fn create(path: &Path, meta: &Meta) -> Result<Self, RecordError> {
        let f = Self::open(path)?;
        Self::start(f, path, meta)
    }

    /// The file of a recording, created private (see [`create_private`]).
    pub fn open(path: &Path) -> Result<File, RecordError> {
        create_private(path)
            .map_err(|e| RecordError::Io(format!("cannot create {}", path.display()), e))
    }

    /// Start a recording in `f` (from [`Writer::open`]).
    pub fn start(mut f: File, path: &Path, meta: &Meta) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        head.extend_from_slice(&0u16.to_le_bytes());
        f.write_all(&head)
            .map_err(|e| RecordError::Io(format!("cannot write {name}"), e))?;
        let mut w = Writer {
            out: GzEncoder::new(BufWriter::new(f), Compression::fast()),
            symbols: HashMap::new(),
        };
        w.json(1, meta)
            .map_err(|e| RecordError::Io(format!("cannot write {name}"), e))?;
        Ok(w)
    }

    fn raw(&mut self, kind: u8, payload: &[u8]) -> std::io::Result<()> {
        self.out.write_all(&[kind])?;
        self.out.write_all(&(payload.len() as u32).to_le_bytes())?;
        self.out.write_all(payload)
    }

    fn json<T: Serialize>(&mut self, kind: u8, v: &T) -> std::io::Result<()> {
        let b = serde_json::to_vec(v).map_err(std::io::Error::other)?;
        self.raw(kind, &b)
    }

    pub fn names(&mut self, n: &NamesSnapshot) -> std::io::Result<()> {
        self.json(2, n)
    }

    pub fn event(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.raw(3, bytes)
    }

    /// Timelines were completed at `now`; the stream is flushed here.
    pub fn tick(&mut self, now: u64) -> std::io::Result<()> {
        self.raw(4, &now.to_le_bytes())?;
        self.out.flush()
    }

    /// Record a kernel code address's symbol once.
    pub fn symbol(&mut self, addr: u64, name: &str) -> std::io::Result<()> {
        if addr == 0 || self.symbols.insert(addr, ()).is_some() {
            return Ok(());
        }
        self.json(5, &(addr, name))
    }

    pub fn counted(&mut self, c: &CountedRecord) -> std::io::Result<()> {
        self.json(7, c)
    }

    pub fn evidence(&mut self, a: &Answered) -> std::io::Result<()> {
        self.json(8, a)
    }

    pub fn end(mut self, end: &End) -> std::io::Result<()> {
        self.json(6, end)?;
        self.out.finish()?.flush()
    }
}

pub struct Reader {
    path: String,
    input: GzDecoder<BufReader<File>>,
    records: u64,
    pub truncated: bool,
    done: bool,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| RecordError::Io(format!("cannot open {name}"), e))?;
        let mut f = BufReader::new(f);
        let mut head = [0u8; 12];
        if f.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
            return Err(RecordError::NotOurs(name));
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version > FORMAT_VERSION || version == 0 {
            return Err(RecordError::FutureVersion {
                path: name,
                found: version,
            });
        }
        Ok(Reader {
            path: name,
            input: GzDecoder::new(f),
            records: 0,
            truncated: false,
            done: false,
        })
    }

    fn corrupt(&self, what: impl Into<String>) -> RecordError {
        RecordError::Corrupt {
            path: self.path.clone(),
            record: self.records,
            what: what.into(),
        }
    }

    /// Fill `buf` completely; Ok(false) when the stream ends first.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, RecordError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => return Ok(false),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A gzip stream cut short: what came before is good.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(self.corrupt(format!("compressed stream: {e}"))),
            }
        }
        Ok(true)
    }

    /// The next record; None at the end (see `truncated`).
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordError> {
        if self.done {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        if !self.fill(&mut head)? {
            self.truncated = true;
            self.done = true;
            return Ok(None);
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX_RECORD {
            return Err(self.corrupt(format!("record length {len}")));
        }
        let mut payload = vec![0u8; len as usize];
        if !self.fill(&mut payload)? {
            self.truncated = true;
            self.done = true;
            return Ok(None);
        }
        self.records += 1;
        let json_err = |e: serde_json::Error| e.to_string();
        let rec = match head[0] {
            1 => Record::Meta(
                serde_json::from_slice(&payload).map_err(|e| self.corrupt(json_err(e)))?,
            ),
            2 => Record::Names(
                serde_json::from_slice(&payload).map_err(|e| self.corrupt(json_err(e)))?,
            ),
            3 => Record::Event(payload),
            4 => {
                let b: [u8; 8] = payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| self.corrupt("tick of wrong size"))?;
                Record::Tick(u64::from_le_bytes(b))
            }
            5 => {
                let (a, s): (u64, String) =
                    serde_json::from_slice(&payload).map_err(|e| self.corrupt(json_err(e)))?;
                Record::Symbol(a, s)
            }
            6 => {
                self.done = true;
                Record::End(
                    serde_json::from_slice(&payload).map_err(|e| self.corrupt(json_err(e)))?,
                )
            }
            7 => Record::Counted(
                serde_json::from_slice(&payload).map_err(|e| self.corrupt(json_err(e)))?,
            ),
            8 => Record::Evidence(
                serde_json::from_slice(&payload).map_err(|e| self.corrupt(json_err(e)))?,
            ),
            k => return Err(self.corrupt(format!("unknown record kind {k}"))),
        };
        if self.records == 1 && !matches!(rec, Record::Meta(_)) {
            return Err(self.corrupt("first record is not the header"));
        }
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            netflow_version: "0.1.0".into(),
            kernel: "6.18".into(),
            hostname: "node".into(),
            realtime_offset_ns: 1,
            summary: "every packet".into(),
            probes: vec![],
            idle_ns: 1_000_000_000,
            vxlan_ports: vec![4789],
            rule_hold_ns: 0,
            dns_ports: vec![],
            started_ns: 0,
            probe_list: vec![],
        }
    }

    fn write(path: &Path, end: bool) {
        let mut w = Writer::create(path, &meta()).unwrap();
        w.names(&NamesSnapshot {
            netns: vec![(1, "host".into())],
            ..Default::default()
        })
        .unwrap();
        w.event(&[1, 2, 3]).unwrap();
        w.symbol(0xffff, "ip_rcv+0x10").unwrap();
        w.symbol(0xffff, "ip_rcv+0x10").unwrap();
        w.tick(42).unwrap();
        if end {
            w.end(&End {
                events: 1,
                lost: 0,
                sampled: 0,
                ended_ns: 0,
            })
            .unwrap();
        }
    }

    fn read_all(path: &Path) -> (Vec<Record>, bool) {
        let mut r = Reader::open(path).unwrap();
        let mut out = vec![];
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        (out, r.truncated)
    }

    #[test]
    fn roundtrip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("nfrec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.nflw");
        write(&p, true);
        let (recs, truncated) = read_all(&p);
        assert!(!truncated);
        assert_eq!(recs.len(), 6, "one symbol record only: {recs:?}");
        assert_eq!(recs[0], Record::Meta(meta()));
        assert_eq!(recs[2], Record::Event(vec![1, 2, 3]));
        assert_eq!(recs[4], Record::Tick(42));

        // Killed before the end: everything up to the last flush replays.
        let q = dir.join("b.nflw");
        {
            let w = Writer::create(&q, &meta()).unwrap();
            let mut w = w;
            w.event(&[9]).unwrap();
            w.tick(1).unwrap();
            std::mem::forget(w);
        }
        let (recs, truncated) = read_all(&q);
        assert!(truncated);
        assert_eq!(recs.len(), 3);

        // Cut anywhere: no panic, either records or a clear error.
        let full = std::fs::read(&p).unwrap();
        for cut in 0..full.len() {
            let c = dir.join("c.nflw");
            std::fs::write(&c, &full[..cut]).unwrap();
            if let Ok(mut r) = Reader::open(&c) {
                while let Ok(Some(_)) = r.next_record() {}
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_foreign_and_future_files() {
        let dir = std::env::temp_dir().join(format!("nfrec2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x");
        std::fs::write(&p, b"GIF89a not ours").unwrap();
        assert!(matches!(Reader::open(&p), Err(RecordError::NotOurs(_))));
        let mut future = MAGIC.to_vec();
        future.extend_from_slice(&9u16.to_le_bytes());
        future.extend_from_slice(&[0, 0]);
        std::fs::write(&p, &future).unwrap();
        let e = Reader::open(&p).err().unwrap();
        assert!(e.to_string().contains("newer netflow"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
