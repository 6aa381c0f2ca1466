//! Connections from synthetic timelines: outcomes, counts, where a failed
//! connection's packets died.
use etherparse::PacketBuilder;
use netflow_common::Point;

use super::*;
use crate::correlate::{
    tests::{ev, icmp},
    Config as CorrConfig, Correlator,
};

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ip_id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, b"q")
        .unwrap();
    out[4..6].copy_from_slice(&ip_id.to_be_bytes());
    out
}

/// One packet: its skb and its hops (probe point, captured bytes).
type Packet = (u64, Vec<(Point, Vec<u8>)>);

/// The connections of these packets, each seen at its hops in order.
fn run(packets: &[Packet]) -> Vec<Connection> {
    let mut corr = Correlator::new(CorrConfig::default());
    let mut t = 0;
    for (skb, hops) in packets {
        for (point, bytes) in hops {
            t += 10;
            corr.push(ev(t, *skb, *point, "eth0", bytes));
        }
    }
    let mut conns = Connections::new(Config::default());
    for tl in corr.flush() {
        conns.add(&tl);
    }
    conns.flush(&mut |_| None)
}

const C: [u8; 4] = [10, 0, 0, 1];
const VIP: [u8; 4] = [10, 96, 0, 10];
const POD: [u8; 4] = [10, 0, 1, 2];

#[test]
fn a_service_call_across_dnat_is_one_ok_connection() {
    let req = udp(C, VIP, 4000, 53, 1);
    let req_nat = udp(C, POD, 4000, 5353, 1);
    let rep = udp(POD, C, 5353, 4000, 2);
    let rep_nat = udp(VIP, C, 53, 4000, 2);
    let out = run(&[
        (
            1,
            vec![
                (Point::Tx, req.clone()),
                (Point::Rx, req_nat),
                (Point::Socket, vec![]),
            ],
        ),
        (
            2,
            vec![
                (Point::Tx, rep),
                (Point::Rx, rep_nat),
                (Point::Socket, vec![]),
            ],
        ),
    ]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let c = &out[0];
    assert_eq!(c.outcome, Outcome::Ok);
    assert_eq!(c.tuple.dport, Some(53));
    assert_eq!((c.fwd.packets, c.fwd.delivered), (1, 1));
    assert_eq!((c.rev.packets, c.rev.delivered), (1, 1));
    assert_eq!(c.nat.unwrap().kind, crate::correlate::NatKind::Dnat);
}

#[test]
fn outcomes_of_broken_connections() {
    let req = udp(C, POD, 4000, 53, 1);
    let rep = udp(POD, C, 53, 4000, 2);
    let lost = run(&[(
        1,
        vec![(Point::Tx, req.clone()), (Point::Drop, req.clone())],
    )]);
    assert_eq!(lost[0].outcome, Outcome::RequestLost);
    assert!(lost[0].at.as_ref().unwrap().drop.is_some());
    let silent = run(&[(1, vec![(Point::Tx, req.clone()), (Point::Socket, vec![])])]);
    assert_eq!(silent[0].outcome, Outcome::NoReply);
    assert_eq!(silent[0].at.as_ref().unwrap().hop.point, Point::Socket);
    let reply_lost = run(&[
        (1, vec![(Point::Tx, req.clone()), (Point::Socket, vec![])]),
        (2, vec![(Point::Tx, rep.clone()), (Point::Drop, rep)]),
    ]);
    assert_eq!(reply_lost[0].outcome, Outcome::ReplyLost);
    assert_eq!(reply_lost[0].rev.dropped, 1);
    // ICMP port unreachable quoting the request.
    let mut unreach = Vec::new();
    PacketBuilder::ipv4(POD, C, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut unreach, &req)
        .unwrap();
    let refused = run(&[
        (1, vec![(Point::Tx, req.clone()), (Point::Drop, req)]),
        (2, vec![(Point::Tx, unreach), (Point::Socket, vec![])]),
    ]);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].outcome, Outcome::Refused);
}

#[test]
fn pings_and_answers_seen_first() {
    let req = icmp(C, POD, 7, 1, 10);
    let mut rep = icmp(POD, C, 7, 1, 11);
    rep[20] = 0; // echo reply
    let out = run(&[
        (1, vec![(Point::Tx, req), (Point::Socket, vec![])]),
        (2, vec![(Point::Tx, rep.clone()), (Point::Socket, vec![])]),
    ]);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].outcome, Outcome::Ok);
    // Only the answer seen (the trace began after the request): no guess.
    let out = run(&[(2, vec![(Point::Tx, rep), (Point::Socket, vec![])])]);
    assert_eq!(out[0].outcome, Outcome::Incomplete);
    assert_eq!(out[0].tuple.src.to_string(), "10.0.0.1");
}

#[test]
fn a_flood_of_connections_stays_bounded() {
    let mut corr = Correlator::new(CorrConfig::default());
    let max_open = Config::default().max_open;
    let n = max_open as u64 + 100;
    for i in 0..n {
        let p = udp(C, POD, (i % 60000) as u16 + 1, 53, i as u16 + 1);
        corr.push(ev(i * 10 + 1, i + 1, Point::Tx, "eth0", &p));
    }
    let mut conns = Connections::new(Config::default());
    for tl in corr.flush() {
        conns.add(&tl);
    }
    assert_eq!(conns.open_count(), n as usize);
    let early = conns.expire(n * 10 + 100, &mut |_| None);
    assert_eq!(conns.evicted(), early.len() as u64);
    assert!(conns.open_count() <= max_open, "{}", conns.open_count());
    // The least recently active went first.
    assert!(early
        .iter()
        .all(|c| c.tuple.sport.unwrap() <= early.len() as u16 + 1));
}
