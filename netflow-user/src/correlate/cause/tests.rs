//! The cause finder on synthetic timelines and recorded answers.
use netflow_common::Point;

use super::evidence::{Answer, Query};
use super::*;
use crate::correlate::{tests::ev, tests::icmp, Config, Correlator, Nat};
use crate::decode::{packet::Tuple, RouteLookup, What};

struct NoConns;
impl Translations for NoConns {
    fn dnat_of_reply(&self, _: &Tuple) -> Option<Nat> {
        None
    }
}

/// A forwarded packet dropped as undeliverable after its route was found.
fn undeliverable() -> (Timeline, Names) {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "va", &p));
    let mut r = ev(12, 0xa, Point::Route, "vb", &p);
    r.what = What::Route(RouteLookup {
        table: 254,
        gw: None,
        err: 0,
    });
    c.push(r);
    c.push(ev(20, 0xa, Point::Drop, "va", &p));
    let tl = c.flush().remove(0);
    let mut names = Names::default();
    names.reasons.insert(5, "IP_INADDRERRORS".into());
    (tl, names)
}

fn answers(pairs: &'static [(&'static str, &'static str)]) -> impl FnMut(&Query) -> Option<Answer> {
    move |q| match q {
        Query::Sysctl { key, .. } => pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| Answer::Value(v.to_string())),
        _ => None,
    }
}

#[test]
fn forwarding_off_is_named_with_its_setting() {
    let (tl, names) = undeliverable();
    let mut ask = answers(&[
        ("net/ipv4/ip_forward", "0"),
        ("net/ipv4/conf/va/forwarding", "0"),
    ]);
    let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
    let c = e.cause.unwrap();
    assert_eq!(c.kind, "forwarding_disabled");
    assert_eq!(c.setting.as_deref(), Some("net.ipv4.ip_forward"));
    assert_eq!(c.value.as_deref(), Some("0"));
    assert!(
        e.hint.contains("net.ipv4.ip_forward = 0") && e.hint.contains("vb"),
        "{}",
        e.hint
    );
    // Off on the device only: the device's setting.
    let mut ask = answers(&[
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/va/forwarding", "0"),
    ]);
    let c = explain(&tl, &names, &mut ask, &NoConns)
        .unwrap()
        .cause
        .unwrap();
    assert_eq!(c.setting.as_deref(), Some("net.ipv4.conf.va.forwarding"));
}

#[test]
fn forwarding_on_is_ruled_out_and_no_evidence_names_nothing() {
    let (tl, names) = undeliverable();
    let mut ask = answers(&[
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/va/forwarding", "1"),
    ]);
    let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
    assert!(e.cause.is_none());
    assert_eq!(e.ruled_out.len(), 2, "{:?}", e.ruled_out);
    assert!(e.hint.contains("forwarding is on"), "{}", e.hint);
    // Without drop reasons (5.10), freed in ip_forward with forwarding
    // on: no forwarding cause, nothing ruled out (it may be too big).
    let mut old = tl.clone();
    old.drop.as_mut().unwrap().reason = netflow_common::REASON_UNAVAILABLE;
    let mut old_names = names.clone();
    old_names
        .syms
        .insert(old.drop.unwrap().location, "ip_forward+0x1a".into());
    let mut ask = answers(&[
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/va/forwarding", "1"),
    ]);
    assert!(explain(&old, &old_names, &mut ask, &NoConns).is_none());
    // A recording without evidence: the kernel's reason alone.
    let mut ask = answers(&[]);
    assert!(explain(&tl, &names, &mut ask, &NoConns).is_none());
}

/// An ICMP echo 10.0.0.1 -> 10.0.0.2 dropped by netfilter at `hook`.
fn netfilter_drop(hook: u8) -> (Timeline, Names) {
    let p = icmp([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, 100);
    let mut c = Correlator::new(Config::default());
    c.push(ev(10, 0xa, Point::Rx, "va", &p));
    let mut early = ev(15, 0xa, Point::NfEarly, "va", &p);
    early.what = What::Hop { hook, pf: 2 };
    c.push(early);
    c.push(ev(20, 0xa, Point::Drop, "va", &p));
    let tl = c.flush().remove(0);
    let mut names = Names::default();
    names.reasons.insert(5, "NETFILTER_DROP".into());
    (tl, names)
}

fn moved(save: &str) -> Answer {
    let all = crate::decode::xtables::parse_save(save);
    Answer::Legacy(Box::new(evidence::LegacyMoved {
        rules: crate::decode::xtables::rule_count(&all) as u64,
        // Against an empty first read: what counted at all moved.
        moved: crate::decode::xtables::moved(&[], &all),
    }))
}

#[test]
fn a_legacy_rule_is_named_only_when_its_counter_moved_and_it_fits() {
    let (tl, names) = netfilter_drop(2);
    let save = "*filter\n:FORWARD ACCEPT [0:0]\n[3:180] -A FORWARD -j KUBE-FW\n\
        [1:60] -A KUBE-FW -p icmp -d 10.0.0.2/32 -m comment --comment \"default/db:pg has no local endpoints\" -j DROP\n\
        [2:120] -A KUBE-FW -p tcp -j DROP\n";
    let answer = moved(save);
    let mut ask = |q: &Query| match q {
        Query::Legacy { .. } => Some(answer.clone()),
        _ => None,
    };
    let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
    let m = e.rule.expect("the rule");
    assert!(m.hit.rule.contains("-p icmp"), "{:?}", m.hit);
    assert_eq!(m.k8s.map(|k| k.display()).as_deref(), Some("default/db:pg"));
    assert!(e.hint.contains("legacy iptables"), "{}", e.hint);
    // Two rules fit: one of them, neither named.
    let answer = moved(&save.replace("-p tcp -j DROP", "-d 10.0.0.0/8 -j REJECT"));
    let mut ask = |q: &Query| match q {
        Query::Legacy { .. } => Some(answer.clone()),
        _ => None,
    };
    let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
    assert!(
        e.rule.is_none() && e.hint.contains("one of 2 rules"),
        "{}",
        e.hint
    );
    // Nothing that fits moved (a rule at another hook, a rule for TCP):
    // no rule, no policy.
    let answer = moved("*filter\n:FORWARD DROP [0:0]\n[1:60] -A INPUT -j DROP\n[2:120] -A FORWARD -p tcp -j DROP\n");
    let mut ask = |q: &Query| match q {
        Query::Legacy { .. } => Some(answer.clone()),
        _ => None,
    };
    assert!(explain(&tl, &names, &mut ask, &NoConns).is_none());
}

#[test]
fn conntrack_is_named_only_when_its_statistics_moved_at_its_hooks() {
    let state = |drop, insert_failed| evidence::ConntrackState {
        count: 8,
        max: 8,
        drop,
        insert_failed,
        ..Default::default()
    };
    let (tl, names) = netfilter_drop(0);
    let full = state(3, 0);
    let mut ask = |q: &Query| match q {
        Query::Conntrack { .. } => Some(Answer::Conntrack(full.clone())),
        _ => None,
    };
    let e = explain(&tl, &names, &mut ask, &NoConns).unwrap();
    let c = e.cause.unwrap();
    assert_eq!((c.kind, c.value.as_deref()), ("conntrack_full", Some("8")));
    assert!(
        e.hint.contains("net.netfilter.nf_conntrack_max = 8"),
        "{}",
        e.hint
    );
    // At the count of the max, but nothing dropped by conntrack: not named.
    let still = state(0, 0);
    let mut ask = |q: &Query| match q {
        Query::Conntrack { .. } => Some(Answer::Conntrack(still.clone())),
        _ => None,
    };
    assert!(explain(&tl, &names, &mut ask, &NoConns).is_none());
    // A lost insert race at POSTROUTING; the same at FORWARD is not it.
    let (tl, names) = netfilter_drop(4);
    let raced = state(0, 1);
    let mut ask = |q: &Query| match q {
        Query::Conntrack { .. } => Some(Answer::Conntrack(raced.clone())),
        _ => None,
    };
    let c = explain(&tl, &names, &mut ask, &NoConns)
        .unwrap()
        .cause
        .unwrap();
    assert_eq!(c.kind, "conntrack_insert_failed");
    let (tl, names) = netfilter_drop(2);
    let mut ask = |q: &Query| match q {
        Query::Conntrack { .. } => Some(Answer::Conntrack(raced.clone())),
        _ => None,
    };
    assert!(explain(&tl, &names, &mut ask, &NoConns).is_none());
}
