//! netflow's output contract: every record `netflow trace --json`, `replay
//! --json` and the agent write, one JSON object per line.
//!
//! Each line is a [`Line`]: the envelope (`v`, `kind`, `time`, `ts_ns`,
//! `node`) and one [`Record`] (`start`, `packet`, `connection`, `tcp`,
//! `stats`). The types here are the wire types: netflow's own (decoder,
//! correlator) convert into them at one place (`netflow::output::view`),
//! so renaming an internal type never changes the output. Each word the
//! output uses is spelled once, here ([`wire_enum!`]).
//!
//! Compatibility: [`VERSION`] is the `v` of every line. Adding an optional
//! field keeps it; renaming or removing a field, changing its type or
//! removing an enum value bumps it (`schema/compat/` holds the schema each
//! version was published with, and a test holds the current one to it).
//! Readers ignore fields they do not know.
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

#[macro_use]
mod words;
mod connection;
mod dns;
mod packet;
mod run;

pub use connection::{Connection, DirCounts, Outcome};
pub use dns::{Dns, DnsAnswer};
pub use packet::{
    Cause, Dir, Drop, Encap, EncapKind, Flow, Hop, Icmp, K8sRef, Nat, NatKind, Packet, Point,
    Proto, Route, Rule, Stage, Verdict,
};
pub use run::{Probe, Start, Stats, TcpEvent, TcpNote};
pub use words::UnknownWord;

/// The format version: `"v"` of every line.
pub const VERSION: u32 = 1;

/// One line of output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "netflow output line")]
pub struct Line {
    /// The format version ([`VERSION`]).
    #[schemars(extend("const" = VERSION))]
    pub v: u32,
    /// Wall-clock time of the record, RFC 3339 with nanoseconds, UTC
    /// (`ts_ns` on the node's realtime clock).
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
    /// The node's monotonic clock (CLOCK_MONOTONIC, ns): a packet's first
    /// hop, a connection's first packet, a note's event, the stats' moment.
    pub ts_ns: u64,
    /// The node it was seen on: its hostname, or `--node`.
    pub node: String,
    #[serde(flatten)]
    pub record: Record,
}

/// What a line says, by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// The run starts: what is traced and which probes are on.
    Start(Start),
    /// One packet's path across the node.
    Packet(Packet),
    /// One connection (a flow and its replies), when it ends.
    Connection(Connection),
    /// A TCP event of a connection (retransmission, reset).
    Tcp(TcpNote),
    /// The run's counters (the last line; the agent also writes them periodically).
    Stats(Stats),
}

impl Record {
    /// The `kind` of its line.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Start(_) => "start",
            Record::Packet(_) => "packet",
            Record::Connection(_) => "connection",
            Record::Tcp(_) => "tcp",
            Record::Stats(_) => "stats",
        }
    }
}

/// The JSON Schema of a [`Line`], as `netflow schema` prints it and
/// `schema/netflow.schema.json` holds it.
pub fn schema() -> Schema {
    let mut s = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Line>();
    s.insert(
        "$id".into(),
        format!("https://netflow.dev/schema/v{VERSION}/netflow.schema.json").into(),
    );
    s.insert(
        "description".into(),
        format!("One line of netflow's JSON output, format version {VERSION}").into(),
    );
    s
}

/// [`schema`] as the checked-in file holds it (pretty, ending in a newline).
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).expect("a schema serializes");
    s.push('\n');
    s
}

pub mod compat;
