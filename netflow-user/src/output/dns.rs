//! DNS as users read it: the `dns` object of packets and connections, the
//! words of the text output (`dns A? web.default.svc.cluster.local ->
//! NXDOMAIN in 0.4 ms`) and the hint of a failed lookup.
use crate::correlate::connections::dns::{Lookups, Result as LookupResult, Try};
use crate::decode::dns::{rcode_name, type_name, Answer, Message};

pub use netflow_schema::Dns as DnsView;

fn answers(a: &[Answer]) -> Vec<netflow_schema::DnsAnswer> {
    a.iter()
        .map(|a| netflow_schema::DnsAnswer {
            rtype: a.rtype.to_string(),
            data: a.data.clone(),
        })
        .collect()
}

/// A packet's DNS message.
pub fn message_view(m: &Message) -> DnsView {
    DnsView {
        id: m.id,
        qname: m.qname.clone(),
        qtype: type_name(m.qtype),
        rcode: m.response.then(|| rcode_name(m.rcode)),
        answer_count: m.response.then_some(m.answer_count),
        answers: answers(&m.answers),
        latency_ns: None,
        truncated: m.truncated,
        tries: Vec::new(),
    }
}

fn try_view(t: &Try) -> DnsView {
    let (rcode, answer_count, answers, truncated) = match &t.response {
        Some((r, _)) => (
            Some(rcode_name(r.rcode)),
            Some(r.answer_count),
            answers(&r.answers),
            r.truncated,
        ),
        None => (None, None, Vec::new(), false),
    };
    DnsView {
        id: t.query.id,
        qname: t.query.qname.clone(),
        qtype: type_name(t.query.qtype),
        rcode,
        answer_count,
        answers,
        latency_ns: t.latency_ns(),
        truncated,
        tries: Vec::new(),
    }
}

/// A connection's lookups: named by its last answered try (else its last
/// query), with every try when there were several.
pub fn lookups_view(l: &Lookups) -> Option<DnsView> {
    let mut v = try_view(l.last()?);
    if l.tries.len() > 1 {
        v.tries = l.tries.iter().map(try_view).collect();
    }
    Some(v)
}

/// A packet's message: `A? web.test` (a query), `A? web.test -> NOERROR
/// 10.0.0.1` (a response).
pub fn message_words(m: &Message) -> String {
    packet_words(&message_view(m))
}

/// [`message_words`] from the packet's view.
pub fn packet_words(v: &DnsView) -> String {
    describe(v, false)
}

/// `A? web.default.svc.cluster.local -> NXDOMAIN in 0.4 ms` (`-> no
/// answer` for a query nobody answered; a walk says how many tries).
pub fn words(v: &DnsView) -> String {
    describe(v, true)
}

fn describe(v: &DnsView, lookup: bool) -> String {
    let name = v.qname.as_deref().unwrap_or("(name cut by the capture)");
    let mut s = format!("{}? {name}", v.qtype);
    match &v.rcode {
        Some(rc) => {
            s.push_str(&format!(" -> {rc}"));
            if !v.answers.is_empty() {
                let a: Vec<&str> = v.answers.iter().map(|a| a.data.as_str()).collect();
                s.push_str(&format!(" {}", a.join(",")));
            }
        }
        None if lookup => s.push_str(" -> no answer"),
        None => {}
    }
    if let Some(ns) = v.latency_ns {
        s.push_str(&format!(" in {:.1} ms", ns as f64 / 1e6));
    }
    if v.tries.len() > 1 {
        s.push_str(&format!(" ({} tries)", v.tries.len()));
    }
    s
}

/// The hint of a lookup that failed: the name and what the answer means.
pub fn hint(l: &Lookups, server: &str) -> Option<String> {
    let last = l.last()?;
    let name = last.query.qname.as_deref().unwrap_or("the name");
    Some(match l.result()? {
        LookupResult::Answered => return None,
        LookupResult::Unanswered => format!(
            "{server} never answered {}? {name}: is the DNS server up and reachable from this pod (CoreDNS pods, NodeLocal DNSCache, a policy on port 53)?",
            type_name(last.query.qtype)
        ),
        LookupResult::Error(rc) => match rcode_name(rc).as_str() {
            "NXDOMAIN" => format!(
                "{server} says {name} does not exist (NXDOMAIN): check the name, the Service's namespace (NAME.NAMESPACE.svc.cluster.local) and the pod's search path"
            ),
            "SERVFAIL" => format!(
                "{server} could not resolve {name} (SERVFAIL): its upstream failed or timed out; check the DNS server's logs and its forwarders"
            ),
            "REFUSED" => format!(
                "{server} refused to answer {name} (REFUSED): it does not serve this zone or this client; check its configuration"
            ),
            other => format!("{server} answered {name} with {other}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u16, name: &str, response: bool, rcode: u8) -> Message {
        Message::a(id, name, response, rcode)
    }

    #[test]
    fn words_and_hints_name_the_query_and_its_answer() {
        let mut l = Lookups::default();
        l.see(msg(1, "missing.default.svc.cluster.local", false, 0), 0);
        l.see(
            msg(1, "missing.default.svc.cluster.local", true, 3),
            400_000,
        );
        let v = lookups_view(&l).unwrap();
        assert_eq!(
            words(&v),
            "A? missing.default.svc.cluster.local -> NXDOMAIN in 0.4 ms"
        );
        assert!(hint(&l, "10.96.0.10:53").unwrap().contains("NXDOMAIN"));

        let mut l = Lookups::default();
        l.see(msg(2, "web", false, 0), 0);
        assert_eq!(words(&lookups_view(&l).unwrap()), "A? web -> no answer");
        assert!(hint(&l, "10.96.0.10:53")
            .unwrap()
            .contains("never answered"));
        l.see(msg(2, "web", true, 0), 1_000_000);
        assert!(hint(&l, "10.96.0.10:53").is_none());
    }
}
