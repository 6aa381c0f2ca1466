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
