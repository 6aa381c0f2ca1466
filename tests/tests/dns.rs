//! DNS on the timeline, with Debian's dnsmasq and BIND as the lab's DNS
//! servers and `dig` and glibc (`getent`) as the clients: each lookup is named by its query and its response
//! code (or as unanswered), a healthy one reads `ok` with its latency,
//! straight and through a Service VIP (DNAT on the node). Over UDP: a TCP
//! segment's data lies in page fragments the programs do not read yet.
use netflow_schema::{Connection, Line, Outcome, Packet, Proto};
use netflow_tests::*;

/// A directory removed however the test ends.
struct RemoveDirOnDrop(std::path::PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The name a connection's lookup asked for.
fn conn_qname(c: &Connection) -> Option<&str> {
    c.dns.as_ref().and_then(|d| d.qname.as_deref())
}

/// The name a packet's DNS message asks for.
fn packet_qname(p: &Packet) -> Option<&str> {
    p.dns.as_ref().and_then(|d| d.qname.as_deref())
}

/// The response code of a packet's DNS message (`None` for a query).
fn packet_rcode(p: &Packet) -> Option<&str> {
    p.dns.as_ref().and_then(|d| d.rcode.as_deref())
}

/// The response code of a connection's lookup.
fn conn_rcode(c: &Connection) -> Option<&str> {
    c.dns.as_ref().and_then(|d| d.rcode.as_deref())
}

/// The one connection whose lookup asked for `name` over `proto`.
fn lookup<'a>(lines: &'a [Line], name: &str, proto: Proto) -> &'a Connection {
    let c: Vec<&Connection> = connections(lines)
        .into_iter()
        .filter(|c| conn_qname(c) == Some(name) && c.flow.proto == proto)
        .collect();
    assert_eq!(
        c.len(),
        1,
        "{name} over {proto:?}: {:#?}",
        connections(lines)
    );
    c[0]
}

#[test]
fn lookups_are_named_by_query_and_response_code() {
    let (lab, node, a, b, _va, _vb) = routed_lab("dns");
    let b_ip = format!("{}.0.2", lab.net());
    let vip = format!("10.96.{}.10", lab.net().trim_start_matches("10."));
    // kube-dns's Service: its VIP DNATed to the server pod, UDP and TCP.
    for proto in ["udp", "tcp"] {
        sh(&format!(
            "ip netns exec {node} iptables -t nat -A PREROUTING -d {vip} -p {proto} --dport 53 -j DNAT --to-destination {b_ip}:53"
        ));
    }
    let _dns = dnsmasq(
        &b,
        &b_ip,
        &[
            ("web.default.svc.cluster.local", "10.96.0.20"),
            ("api.default.svc.cluster.local", "10.96.0.21"),
        ],
    );
    // Pod a's resolver as Kubernetes writes it (`ip netns exec` mounts it
    // over /etc/resolv.conf): a short name walks the search path.
    let resolv = std::path::PathBuf::from(format!("/etc/netns/{a}"));
    std::fs::create_dir_all(&resolv).unwrap();
    let _resolv = RemoveDirOnDrop(resolv.clone());
    std::fs::write(
        resolv.join("resolv.conf"),
        format!("nameserver {b_ip}\nsearch other.svc.cluster.local default.svc.cluster.local\noptions ndots:5 attempts:1\n"),
    )
    .unwrap();
    let _silent = silent_udp(&b, &b_ip, 5353);
    let _named = named_servfail(&b, &b_ip, 5300);
    lab.exec(&a, &format!("ping -c1 -W2 {b_ip}"));

    let dir = std::env::temp_dir().join(format!("netflow-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = RemoveDirOnDrop(dir.clone());
    // Readable by the unprivileged replay below.
    sh(&format!("chmod 755 {}", dir.display()));
    let rec = dir.join("dns.nflw");
    let rec_s = rec.to_str().unwrap();
    let t = Tracer::start(&[
        "--netns",
        &a,
        "--dns-port",
        "5353",
        "--dns-port",
        "5300",
        "--write",
        rec_s,
    ]);
    let said = dig(&a, &format!("@{b_ip} web.default.svc.cluster.local A"));
    assert!(said.contains("10.96.0.20"), "{said}");
    let said = dig(&a, &format!("@{b_ip} missing.default.svc.cluster.local A"));
    assert!(said.contains("NXDOMAIN"), "{said}");
    let said = dig(&a, &format!("@{b_ip} outside.example A"));
    assert!(said.contains("REFUSED"), "{said}");
    dig(&a, &format!("@{b_ip} -p 5353 silent.test A"));
    let said = dig(&a, &format!("@{b_ip} -p 5300 x.broken.test A"));
    assert!(said.contains("SERVFAIL"), "{said}");
    // glibc's walk: api.other.svc.cluster.local (NXDOMAIN), then
    // api.default.svc.cluster.local.
    let said = sh(&format!("ip netns exec {a} getent ahostsv4 api"));
    assert!(said.contains("10.96.0.21"), "{said}");
    let said = dig(&a, &format!("@{vip} web.default.svc.cluster.local A"));
    assert!(said.contains("NOERROR"), "{said}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = t.stop_lines();
    sh(&format!("chmod 644 {rec_s}"));

    // Healthy: ok, the answer and the time it took.
    let webs: Vec<&Connection> = connections(&lines)
        .into_iter()
        .filter(|c| conn_qname(c) == Some("web.default.svc.cluster.local"))
        .collect();
    assert_eq!(webs.len(), 2, "{webs:#?}");
    let straight = webs
        .iter()
        .find(|c| c.flow.dst.to_string() == b_ip)
        .unwrap_or_else(|| panic!("{webs:#?}"));
    assert_eq!(straight.outcome, Outcome::Ok, "{straight:#?}");
    let d = straight
        .dns
        .as_ref()
        .unwrap_or_else(|| panic!("no dns: {straight:#?}"));
    assert_eq!(d.rcode.as_deref(), Some("NOERROR"), "{straight:#?}");
    assert_eq!(d.qtype, "A", "{straight:#?}");
    assert_eq!(
        d.answers.first().map(|a| a.rtype.as_str()),
        Some("A"),
        "{straight:#?}"
    );
    assert_eq!(
        d.answers.first().map(|a| a.data.as_str()),
        Some("10.96.0.20"),
        "{straight:#?}"
    );
    assert!(d.latency_ns.is_some_and(|l| l > 0), "{straight:#?}");
    // Through the VIP: named by the client's tuple, translated, answered.
    let via = webs
        .iter()
        .find(|c| c.flow.dst.to_string() == vip)
        .unwrap_or_else(|| panic!("{webs:#?}"));
    assert_eq!(via.outcome, Outcome::Ok, "{via:#?}");
    assert_eq!(
        via.dns
            .as_ref()
            .and_then(|d| d.answers.first())
            .map(|a| a.data.as_str()),
        Some("10.96.0.20"),
        "{via:#?}"
    );
    assert_eq!(conn_rcode(via), Some("NOERROR"), "{via:#?}");
    assert_eq!(
        via.nat.as_ref().map(|n| n.to.as_str()),
        Some(format!("{b_ip}:53").as_str()),
        "{via:#?}"
    );

    // An answer that is an error: its own outcome, with the code.
    let missing = lookup(&lines, "missing.default.svc.cluster.local", Proto::Udp);
    assert_eq!(missing.outcome, Outcome::DnsError, "{missing:#?}");
    assert_eq!(conn_rcode(missing), Some("NXDOMAIN"), "{missing:#?}");
    assert!(
        missing
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("NXDOMAIN")),
        "{missing:#?}"
    );
    let refused = lookup(&lines, "outside.example", Proto::Udp);
    assert_eq!(refused.outcome, Outcome::DnsError, "{refused:#?}");
    assert_eq!(conn_rcode(refused), Some("REFUSED"), "{refused:#?}");

    let broken = lookup(&lines, "x.broken.test", Proto::Udp);
    assert_eq!(broken.outcome, Outcome::DnsError, "{broken:#?}");
    assert_eq!(conn_rcode(broken), Some("SERVFAIL"), "{broken:#?}");
    assert!(
        broken
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("SERVFAIL")),
        "{broken:#?}"
    );

    // Nobody answered: no_reply, naming the query (a --dns-port server).
    let silent = lookup(&lines, "silent.test", Proto::Udp);
    assert_eq!(silent.outcome, Outcome::NoReply, "{silent:#?}");
    assert_eq!(conn_rcode(silent), None, "{silent:#?}");
    assert!(
        silent
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("never answered")),
        "{silent:#?}"
    );

    // A search-path walk is one lookup with its tries: it reads ok, and
    // the NXDOMAIN of its first try is no failure of its own.
    let walk = lookup(&lines, "api.default.svc.cluster.local", Proto::Udp);
    assert_eq!(walk.outcome, Outcome::Ok, "{walk:#?}");
    let tries: Vec<(&str, &str)> = walk
        .dns
        .as_ref()
        .unwrap_or_else(|| panic!("{walk:#?}"))
        .tries
        .iter()
        .map(|t| {
            (
                t.qname
                    .as_deref()
                    .unwrap_or_else(|| panic!("a try without a name: {walk:#?}")),
                t.rcode.as_deref().unwrap_or("-"),
            )
        })
        .collect();
    assert!(
        tries.contains(&("api.other.svc.cluster.local", "NXDOMAIN"))
            && tries.last() == Some(&("api.default.svc.cluster.local", "NOERROR")),
        "{tries:?}"
    );
    assert!(
        connections(&lines)
            .iter()
            .all(|c| conn_qname(c) != Some("api.other.svc.cluster.local")),
        "{:#?}",
        connections(&lines)
    );

    // Packets carry their message too: the query and the response.
    let msgs: Vec<&Packet> = packets(&lines)
        .into_iter()
        .filter(|p| packet_qname(p) == Some("missing.default.svc.cluster.local"))
        .collect();
    assert!(
        msgs.iter().any(|p| packet_rcode(p).is_none())
            && msgs.iter().any(|p| packet_rcode(p) == Some("NXDOMAIN")),
        "{msgs:#?}"
    );

    // Offline, as nobody: the recording replays to the same lookups (the
    // --dns-port travels with it), and the dashboard names them.
    let out = unprivileged(&["replay", rec_s, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = parse_lines(&String::from_utf8_lossy(&out.stdout));
    for name in [
        "missing.default.svc.cluster.local",
        "outside.example",
        "silent.test",
    ] {
        assert_eq!(
            lookup(&replayed, name, Proto::Udp),
            lookup(&lines, name, Proto::Udp),
            "{name}"
        );
    }
    let app = replayed_dashboard(&rec);
    let screen = dashboard_screen(&app.lock().unwrap());
    // The failed lookups first: the server's row counts them.
    let first = screen
        .lines()
        .skip_while(|l| !l.contains("endpoint"))
        .nth(1)
        .unwrap_or("");
    assert!(first.contains("dns_error"), "{screen}");
    // The lookup through the VIP, selected by a filter, shows its message.
    {
        use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let mut a = app.lock().unwrap();
        for c in std::iter::once('/').chain(vip.chars()) {
            a.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        a.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    }
    let screen = dashboard_screen(&app.lock().unwrap());
    assert!(
        screen.contains("dns A? web.default.svc.cluster.local -> NOERROR"),
        "{screen}"
    );
}
