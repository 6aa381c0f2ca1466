//! A resolver's search-path walk as one lookup. A pod asking for `web`
//! with Kubernetes' `ndots:5` tries `web.NAMESPACE.svc.cluster.local`,
//! `web.svc.cluster.local`, `web.cluster.local`, ... in turn, and glibc
//! opens a socket per try: each try is a connection of its own, and all but
//! the last answer NXDOMAIN. A lookup that ended NXDOMAIN is held a moment
//! ([`HOLD_NS`] past its last packet); a later try of the same walk (the
//! same client, server and first label, within that time) takes its tries
//! and is reported alone, with all of them: a walk that ends in an answer
//! reads `ok`, one that never does reads `dns_error` once, by its last try.
use std::collections::HashMap;
use std::net::IpAddr;

use super::{dns::Result as LookupResult, Connection, Outcome};

/// How long a lookup that ended NXDOMAIN waits for the walk's next try.
/// Tries follow each other within milliseconds; connections are reported
/// in the order they went quiet.
pub const HOLD_NS: u64 = 2_000_000_000;
/// Lookups held at most (memory stays bounded under a flood of them).
const MAX_HELD: usize = 4096;
const NXDOMAIN: u8 = 3;

/// Client, server, server port, the name's first label.
type WalkKey = (IpAddr, IpAddr, Option<u16>, String);

#[derive(Default)]
pub struct Walks {
    held: HashMap<WalkKey, Vec<Connection>>,
    count: usize,
}

fn walk_key(c: &Connection) -> Option<WalkKey> {
    let l = c.dns.as_deref()?;
    let name = l.last()?.query.qname.as_deref()?;
    let first = name.split('.').next()?.to_ascii_lowercase();
    Some((c.tuple.src, c.tuple.dst, c.tuple.dport, first))
}

fn ended_nxdomain(c: &Connection) -> bool {
    c.outcome == Outcome::DnsError
        && c.dns
            .as_deref()
            .and_then(|l| l.result())
            .is_some_and(|r| r == LookupResult::Error(NXDOMAIN))
}

impl Walks {
    /// Connections just finished, at `now`: those to report now (in order),
    /// the NXDOMAIN ones held until the walk goes on or [`HOLD_NS`] passes.
    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn settle(&mut self, finished: Vec<Connection>, now: u64) -> Vec<Connection> {
        let mut out = Vec::with_capacity(finished.len());
        for mut c in finished {
            let Some(key) = walk_key(&c) else {
                out.push(c);
                continue;
            };
            // Earlier tries of its walk: folded into it.
            if let Some(earlier) = self.held.remove(&key) {
                self.count -= earlier.len();
                fold(&mut c, earlier);
            }
            if ended_nxdomain(&c) && self.count < MAX_HELD {
                self.count += 1;
                self.held.entry(key).or_default().push(c);
            } else {
                out.push(c);
            }
        }
        // Walks that went no further.
        let expired: Vec<WalkKey> = self
            .held
            .iter()
            .filter(|(_, v)| v.iter().all(|c| c.last_ts_ns + HOLD_NS <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(v) = self.held.remove(&k) {
                self.count -= v.len();
                out.extend(last_with_tries(v));
            }
        }
        out
    }
}

/// A walk that ended without an answer: its last try, with all of them.
fn last_with_tries(mut v: Vec<Connection>) -> Option<Connection> {
    let mut last = v.pop()?;
    fold(&mut last, v);
    Some(last)
}

/// `c` is the walk's later try: the earlier tries' queries go first.
fn fold(c: &mut Connection, earlier: Vec<Connection>) {
    let Some(l) = c.dns.as_deref_mut() else {
        return;
    };
    let mut tries = Vec::new();
    for e in earlier {
        if let Some(el) = e.dns {
            tries.extend(el.tries);
        }
        c.first_ts_ns = c.first_ts_ns.min(e.first_ts_ns);
    }
    tries.append(&mut l.tries);
    l.tries = tries;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::connections::dns::{Lookups, Try};
    use crate::decode::dns::Message;
    use crate::decode::packet::{Proto, Tuple};

    fn lookup(sport: u16, name: &str, rcode: u8, ts: u64) -> Connection {
        let msg = |response| Message::a(sport, name, response, rcode);
        Connection {
            tuple: Tuple {
                proto: Proto::Udp,
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.96.0.10".parse().unwrap(),
                sport: Some(sport),
                dport: Some(53),
            },
            outcome: if rcode == 0 {
                Outcome::Ok
            } else {
                Outcome::DnsError
            },
            at: None,
            fwd: Default::default(),
            rev: Default::default(),
            first_ts_ns: ts,
            last_ts_ns: ts + 1000,
            nat: None,
            translations: Vec::new(),
            dnat_rule: None,
            counted_at_sockets: 0,
            read_at_sockets: false,
            dns: Some(Box::new(Lookups {
                tries: vec![Try {
                    query: msg(false),
                    query_ts: ts,
                    response: Some((msg(true), ts + 1000)),
                }],
                more: 0,
            })),
        }
    }

    #[test]
    fn a_walk_that_ends_in_an_answer_is_one_lookup() {
        let mut w = Walks::default();
        let out = w.settle(
            vec![
                lookup(1, "web.default.svc.cluster.local", 3, 0),
                lookup(2, "web.svc.cluster.local", 3, 10_000),
            ],
            20_000,
        );
        assert!(out.is_empty(), "held");
        let out = w.settle(vec![lookup(3, "web", 0, 20_000)], 30_000);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!(c.outcome, Outcome::Ok);
        let names: Vec<&str> = c
            .dns
            .as_ref()
            .unwrap()
            .tries
            .iter()
            .map(|t| t.query.qname.as_deref().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "web.default.svc.cluster.local",
                "web.svc.cluster.local",
                "web"
            ]
        );
        assert_eq!(c.first_ts_ns, 0);
        assert!(w.settle(Vec::new(), u64::MAX).is_empty());
    }

    #[test]
    fn a_walk_with_no_answer_is_one_failure_and_others_pass_through() {
        let mut w = Walks::default();
        let out = w.settle(
            vec![
                lookup(1, "missing.default.svc.cluster.local", 3, 0),
                lookup(2, "missing.svc.cluster.local", 3, 10),
                // Another name, answered: reported at once.
                lookup(3, "web.default.svc.cluster.local", 0, 20),
                // A SERVFAIL is no walk: reported at once.
                lookup(4, "x.broken.test", 2, 30),
            ],
            1_000,
        );
        assert_eq!(out.len(), 2);
        // Nothing followed within the hold: the walk is one dns_error.
        let out = w.settle(Vec::new(), HOLD_NS + 10_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, Outcome::DnsError);
        assert_eq!(out[0].dns.as_ref().unwrap().tries.len(), 2);
        assert_eq!(out[0].tuple.sport, Some(2));
    }
}
