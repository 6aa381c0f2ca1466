//! DNS messages in the bytes an event carries: the id, the question, the
//! response code and the answers that fit in the capture. Lax by design: a
//! capture ends where the kernel stopped copying (128 bytes from the
//! network header), so a message cut short still gives what it holds, and
//! says it was cut (`truncated`). DNS crates reject such messages, hence
//! this small reader.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::packet::{EncapKind, Packet, Proto};

/// The port DNS servers listen on; `--dns-port` adds others.
pub const DNS_PORT: u16 = 53;

/// At most this many answers are kept per message.
const MAX_ANSWERS: usize = 4;

/// One DNS message (a query or a response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub rcode: u8,
    /// The question's name (dotted, no trailing dot), when it fits.
    pub qname: Option<String>,
    pub qtype: u16,
    /// Answers in the message (its header's count).
    pub answer_count: u16,
    /// The first answers, those that fit in the capture.
    pub answers: Vec<Answer>,
    /// The capture ended before the message did.
    pub truncated: bool,
}

impl Message {
    /// A type A message without answers (tests' building block).
    #[cfg(test)]
    pub fn a(id: u16, name: &str, response: bool, rcode: u8) -> Self {
        Message {
            id,
            response,
            rcode,
            qname: Some(name.into()),
            qtype: 1,
            answer_count: 0,
            answers: Vec::new(),
            truncated: false,
        }
    }
}

/// One answer record, as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rtype: &'static str,
    pub data: String,
}

/// A record type's name (`A`, `AAAA`, ...; `TYPE65` for the rest).
pub fn type_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

/// A response code's name (`NOERROR`, `NXDOMAIN`, ...).
pub fn rcode_name(r: u8) -> String {
    match r {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// A response that tells the client its name did not resolve.
pub fn is_error(rcode: u8) -> bool {
    rcode != 0
}

/// The DNS message a packet carries, when it goes to or comes from a DNS
/// port (`ports`: 53 and `--dns-port`). `data` is the event's bytes from
/// the network header on (the outer header of an encapsulated packet).
pub fn of_packet(p: &Packet, data: &[u8], ports: &[u16]) -> Option<Message> {
    let is_dns = |port: Option<u16>| port.is_some_and(|p| p == DNS_PORT || ports.contains(&p));
    if !(is_dns(p.tuple.dport) || is_dns(p.tuple.sport)) {
        return None;
    }
    let (payload, tcp_header) = app_payload(data, p.encap.map(|e| e.kind))?;
    match (p.tuple.proto, tcp_header) {
        (Proto::Udp, None) => parse(payload),
        // Over TCP a message has its 2-byte length first; a client may send
        // the length in a segment of its own, and the message in the next.
        (Proto::Tcp, Some(header)) => {
            let segment = (p.ids.ip_payload_len as usize).saturating_sub(header);
            if segment <= 2 {
                return None;
            }
            let prefix = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]) as usize;
            if prefix + 2 == segment {
                parse(&payload[2..])
            } else {
                parse(payload)
            }
        }
        _ => None,
    }
}

/// The transport payload of the (innermost) packet, and for TCP the length
/// of its header.
fn app_payload(data: &[u8], encap: Option<EncapKind>) -> Option<(&[u8], Option<usize>)> {
    use etherparse::{LaxSlicedPacket, TransportSlice};
    let outer = LaxSlicedPacket::from_ip(data).ok()?;
    let inner = match encap {
        None => outer,
        Some(EncapKind::Vxlan) => match outer.transport {
            Some(TransportSlice::Udp(u)) => {
                LaxSlicedPacket::from_ethernet(u.payload().get(8..)?).ok()?
            }
            _ => return None,
        },
        Some(EncapKind::Ipip) => {
            let p = outer.net.as_ref()?.ip_payload_ref()?;
            LaxSlicedPacket::from_ip(p.payload).ok()?
        }
    };
    match inner.transport? {
        TransportSlice::Udp(u) => Some((u.payload(), None)),
        TransportSlice::Tcp(t) => Some((t.payload(), Some(t.header_len()))),
        _ => None,
    }
}

/// Read a DNS message (from its header on) as far as `m` goes.
pub fn parse(m: &[u8]) -> Option<Message> {
    if m.len() < 12 {
        return None;
    }
    let be16 = |o: usize| u16::from_be_bytes([m[o], m[o + 1]]);
    let flags = be16(2);
    let (qdcount, ancount) = (be16(4), be16(6));
    let mut msg = Message {
        id: be16(0),
        response: flags & 0x8000 != 0,
        rcode: (flags & 0x000f) as u8,
        qname: None,
        qtype: 0,
        answer_count: ancount,
        answers: Vec::new(),
        truncated: false,
    };
    let mut at = 12;
    if qdcount > 0 {
        let Some((qname, next)) = name(m, at) else {
            msg.truncated = true;
            return Some(msg);
        };
        msg.qname = Some(qname);
        if next + 4 > m.len() {
            msg.truncated = true;
            return Some(msg);
        }
        msg.qtype = u16::from_be_bytes([m[next], m[next + 1]]);
        at = next + 4;
        // Further questions (rare): skipped.
        for _ in 1..qdcount {
            match name(m, at) {
                Some((_, next)) if next + 4 <= m.len() => at = next + 4,
                _ => {
                    msg.truncated = true;
                    return Some(msg);
                }
            }
        }
    }
    for _ in 0..ancount {
        if msg.answers.len() == MAX_ANSWERS {
            break;
        }
        let Some((_, next)) = name(m, at) else {
            msg.truncated = true;
            break;
        };
        if next + 10 > m.len() {
            msg.truncated = true;
            break;
        }
        let rtype = u16::from_be_bytes([m[next], m[next + 1]]);
        let rdlen = u16::from_be_bytes([m[next + 8], m[next + 9]]) as usize;
        let rdata_at = next + 10;
        let Some(rdata) = m.get(rdata_at..rdata_at + rdlen) else {
            msg.truncated = true;
            break;
        };
        let answer = match (rtype, rdlen) {
            (1, 4) => Some(Answer {
                rtype: "A",
                data: Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string(),
            }),
            (28, 16) => {
                let a: [u8; 16] = rdata.try_into().ok()?;
                Some(Answer {
                    rtype: "AAAA",
                    data: IpAddr::V6(Ipv6Addr::from(a)).to_string(),
                })
            }
            (5, _) => name(m, rdata_at).map(|(n, _)| Answer {
                rtype: "CNAME",
                data: n,
            }),
            _ => None,
        };
        msg.answers.extend(answer);
        at = rdata_at + rdlen;
    }
    Some(msg)
}

/// The name at `at` (following compression pointers) and the offset after
/// it in the message; `None` when the capture ends inside it or it loops.
fn name(m: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *m.get(at)? as usize;
        match len {
            0 => {
                return Some((out, end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let ptr = ((l & 0x3f) << 8) | *m.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                at = ptr;
            }
            l if l <= 63 => {
                let label = m.get(at + 1..at + 1 + l)?;
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    if b.is_ascii_graphic() && b != b'.' {
                        out.push(b as char);
                    } else {
                        out.push_str(&format!("\\{b:03}"));
                    }
                }
                at += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` (type A) with `id`.
    pub(crate) fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = vec![
            (id >> 8) as u8,
            id as u8,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    pub(crate) fn response(id: u16, name: &str, rcode: u8, answers: &[[u8; 4]]) -> Vec<u8> {
        let mut m = query(id, name);
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[7] = answers.len() as u8;
        for a in answers {
            // A pointer to the question's name, type A, class IN, TTL 5.
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            m.extend_from_slice(a);
        }
        m
    }

    #[test]
    fn a_query_and_its_answers() {
        let q = parse(&query(0x1234, "web.default.svc.cluster.local")).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(!q.response);
        assert_eq!(q.qname.as_deref(), Some("web.default.svc.cluster.local"));
        assert_eq!(type_name(q.qtype), "A");
        assert!(!q.truncated);

        let r = parse(&response(
            0x1234,
            "web.test",
            0,
            &[[10, 96, 0, 10], [10, 96, 0, 11]],
        ))
        .unwrap();
        assert!(r.response);
        assert_eq!(rcode_name(r.rcode), "NOERROR");
        assert_eq!(r.answer_count, 2);
        let data: Vec<&str> = r.answers.iter().map(|a| a.data.as_str()).collect();
        assert_eq!(data, ["10.96.0.10", "10.96.0.11"]);
        assert_eq!(r.answers[0].rtype, "A");
    }

    #[test]
    fn nxdomain_and_a_message_cut_by_the_capture() {
        let r = parse(&response(7, "missing.default.svc.cluster.local", 3, &[])).unwrap();
        assert_eq!(rcode_name(r.rcode), "NXDOMAIN");
        assert!(is_error(r.rcode));
        assert!(r.answers.is_empty());

        // Cut inside the second answer: the first is kept, the cut is said.
        let full = response(9, "a.test", 0, &[[1, 2, 3, 4], [5, 6, 7, 8]]);
        let r = parse(&full[..full.len() - 2]).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert!(r.truncated);
        // Cut inside the question's name: the header still tells.
        let r = parse(&full[..15]).unwrap();
        assert_eq!((r.id, r.qname.clone(), r.truncated), (9, None, true));
        assert!(parse(&full[..11]).is_none());
    }

    #[test]
    fn a_compression_loop_ends() {
        let mut m = query(1, "x");
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let r = parse(&m).unwrap();
        assert_eq!(r.qname, None);
        assert!(r.truncated);
    }
}

#[cfg(test)]
mod packet_tests {
    use super::*;

    #[test]
    fn a_query_over_tcp_with_its_length_first() {
        let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in ["tcp", "default", "svc", "cluster", "local"] {
            msg.push(l.len() as u8);
            msg.extend_from_slice(l.as_bytes());
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut payload = (msg.len() as u16).to_be_bytes().to_vec();
        payload.extend_from_slice(&msg);
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 53, 1, 1000)
            .psh()
            .ack(1);
        let mut pkt = Vec::new();
        b.write(&mut pkt, &payload).unwrap();
        let p = crate::decode::packet::decode_ip(&pkt, &[]).unwrap();
        let m = of_packet(&p, &pkt, &[]).expect("a DNS message");
        assert_eq!(m.qname.as_deref(), Some("tcp.default.svc.cluster.local"));
        // The length in a segment of its own, the message in the next.
        let mut pkt = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 53, 1, 1000)
            .ack(1)
            .write(&mut pkt, &msg)
            .unwrap();
        let p = crate::decode::packet::decode_ip(&pkt, &[]).unwrap();
        assert_eq!(of_packet(&p, &pkt, &[]).unwrap().id, 0x1234);
    }
}
