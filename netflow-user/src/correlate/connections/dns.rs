//! The DNS lookups of one connection: each query (by its id) and its
//! response, with the time between them. A client's search-path walk on
//! one socket (`web.ns.svc.cluster.local`, then `web.svc.cluster.local`,
//! ...) is one connection with several tries; what it came to is the last
//! answer, so the NXDOMAINs of the walk do not read as failures when a
//! later try succeeds.

use crate::decode::dns::{self, Message};

/// At most this many queries are kept per connection (a walk has a few;
/// a client hammering one socket does not grow memory).
const MAX_TRIES: usize = 8;

/// One query and its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Try {
    pub query: Message,
    pub query_ts: u64,
    pub response: Option<(Message, u64)>,
}

impl Try {
    pub fn latency_ns(&self) -> Option<u64> {
        self.response
            .as_ref()
            .map(|(_, ts)| ts.saturating_sub(self.query_ts))
    }

    pub fn rcode(&self) -> Option<u8> {
        self.response.as_ref().map(|(m, _)| m.rcode)
    }
}

/// What the lookups of a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Result {
    /// A query was answered without error (the last answer, or one of
    /// parallel A/AAAA queries).
    Answered,
    /// The last answer was an error (NXDOMAIN, SERVFAIL, REFUSED ...).
    Error(u8),
    /// No query was answered.
    Unanswered,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    pub tries: Vec<Try>,
    /// Queries past [`MAX_TRIES`], not kept.
    pub more: u32,
}

impl Lookups {
    /// A DNS message of the connection, seen at `ts`. A query sent again
    /// (same id and name) is the same try; a response goes to its query.
    pub fn see(&mut self, m: Message, ts: u64) {
        if !m.response {
            if self
                .tries
                .iter()
                .any(|t| t.query.id == m.id && t.query.qname == m.qname)
            {
                return;
            }
            if self.tries.len() == MAX_TRIES {
                self.more += 1;
                return;
            }
            self.tries.push(Try {
                query: m,
                query_ts: ts,
                response: None,
            });
            return;
        }
        if let Some(t) = self
            .tries
            .iter_mut()
            .find(|t| t.query.id == m.id && t.response.is_none())
        {
            t.response = Some((m, ts));
        }
    }

    /// The try the lookup is named by: the last one answered, else the
    /// last one asked.
    pub fn last(&self) -> Option<&Try> {
        self.tries
            .iter()
            .rev()
            .find(|t| t.response.is_some())
            .or(self.tries.last())
    }

    pub fn result(&self) -> Option<Result> {
        if self.tries.is_empty() {
            return None;
        }
        let answered: Vec<&Try> = self.tries.iter().filter(|t| t.response.is_some()).collect();
        let Some(last) = answered.last() else {
            return Some(Result::Unanswered);
        };
        // Parallel queries (A and AAAA on one socket) answered in either
        // order: the name resolved if the last name asked resolved.
        let last_name = &last.query.qname;
        let resolved = answered
            .iter()
            .filter(|t| &t.query.qname == last_name)
            .any(|t| t.rcode() == Some(0));
        Some(match last.rcode() {
            _ if resolved => Result::Answered,
            Some(r) if dns::is_error(r) => Result::Error(r),
            _ => Result::Answered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u16, name: &str, response: bool, rcode: u8) -> Message {
        Message::a(id, name, response, rcode)
    }

    #[test]
    fn a_search_path_walk_that_ends_in_an_answer_is_answered() {
        let mut l = Lookups::default();
        for (i, name) in [
            "web.default.svc.cluster.local",
            "web.svc.cluster.local",
            "web",
        ]
        .iter()
        .enumerate()
        {
            let id = i as u16 + 1;
            let rcode = if i == 2 { 0 } else { 3 };
            l.see(msg(id, name, false, 0), 100 * i as u64);
            l.see(msg(id, name, true, rcode), 100 * i as u64 + 40);
        }
        assert_eq!(l.result(), Some(Result::Answered));
        let last = l.last().unwrap();
        assert_eq!(last.query.qname.as_deref(), Some("web"));
        assert_eq!(last.latency_ns(), Some(40));
        assert_eq!(l.tries.len(), 3);
    }

    #[test]
    fn nxdomain_unanswered_and_a_resent_query() {
        let mut l = Lookups::default();
        l.see(msg(7, "missing.default.svc.cluster.local", false, 0), 0);
        l.see(msg(7, "missing.default.svc.cluster.local", false, 0), 5);
        assert_eq!(l.result(), Some(Result::Unanswered));
        assert_eq!(l.tries.len(), 1);
        l.see(msg(7, "missing.default.svc.cluster.local", true, 3), 9);
        assert_eq!(l.result(), Some(Result::Error(3)));
        assert_eq!(l.last().unwrap().latency_ns(), Some(9));
        // A and AAAA in parallel: one answered, the other NXDOMAIN later.
        let mut l = Lookups::default();
        l.see(msg(1, "a.test", false, 0), 0);
        l.see(msg(2, "a.test", false, 0), 0);
        l.see(msg(1, "a.test", true, 0), 3);
        l.see(msg(2, "a.test", true, 3), 4);
        assert_eq!(l.result(), Some(Result::Answered));
        // Bounded.
        let mut l = Lookups::default();
        for id in 0..20 {
            l.see(msg(id, "x", false, 0), 0);
        }
        assert_eq!((l.tries.len(), l.more), (MAX_TRIES, 12));
    }
}
