//! DNS on the timeline, with Debian's dnsmasq and BIND as the lab's DNS
//! servers and `dig` and glibc (`getent`) as the clients: each lookup is named by its query and its response
//! code (or as unanswered), a healthy one reads `ok` with its latency,
//! straight and through a Service VIP (DNAT on the node). Over UDP: a TCP
//! segment's data lies in page fragments the programs do not read yet.
use netflow_tests::*;
use serde_json::Value;

/// A directory removed however the test ends.
struct RemoveDirOnDrop(std::path::PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The one connection whose lookup asked for `name` over `proto`.
fn lookup<'a>(lines: &'a [Value], name: &str, proto: &str) -> &'a Value {
    let c: Vec<&Value> = connections(lines)
        .into_iter()
        .filter(|c| c["dns"]["qname"] == name && c["flow"]["proto"] == proto)
        .collect();
    assert_eq!(c.len(), 1, "{name} over {proto}: {:#?}", connections(lines));
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
    let lines = t.stop();
    sh(&format!("chmod 644 {rec_s}"));

    // Healthy: ok, the answer and the time it took.
    let webs: Vec<&Value> = connections(&lines)
        .into_iter()
        .filter(|c| c["dns"]["qname"] == "web.default.svc.cluster.local")
        .collect();
    assert_eq!(webs.len(), 2, "{webs:#?}");
    let straight = webs
        .iter()
        .find(|c| c["flow"]["dst"] == b_ip.as_str())
        .unwrap_or_else(|| panic!("{webs:#?}"));
    assert_eq!(straight["outcome"], "ok", "{straight:#}");
    let d = &straight["dns"];
    assert_eq!(d["rcode"], "NOERROR", "{straight:#}");
    assert_eq!(d["qtype"], "A", "{straight:#}");
    assert_eq!(d["answers"][0]["type"], "A", "{straight:#}");
    assert_eq!(d["answers"][0]["data"], "10.96.0.20", "{straight:#}");
    assert!(d["latency_ns"].as_u64().unwrap() > 0, "{straight:#}");
    // Through the VIP: named by the client's tuple, translated, answered.
    let via = webs
        .iter()
        .find(|c| c["flow"]["dst"] == vip.as_str())
        .unwrap_or_else(|| panic!("{webs:#?}"));
    assert_eq!(via["outcome"], "ok", "{via:#}");
    assert_eq!(via["dns"]["answers"][0]["data"], "10.96.0.20", "{via:#}");
    assert_eq!(via["dns"]["rcode"], "NOERROR", "{via:#}");
    assert_eq!(via["nat"]["to"], format!("{b_ip}:53"), "{via:#}");

    // An answer that is an error: its own outcome, with the code.
    let missing = lookup(&lines, "missing.default.svc.cluster.local", "udp");
    assert_eq!(missing["outcome"], "dns_error", "{missing:#}");
    assert_eq!(missing["dns"]["rcode"], "NXDOMAIN", "{missing:#}");
    assert!(
        missing["hint"].as_str().unwrap().contains("NXDOMAIN"),
        "{missing:#}"
    );
    let refused = lookup(&lines, "outside.example", "udp");
    assert_eq!(refused["outcome"], "dns_error", "{refused:#}");
    assert_eq!(refused["dns"]["rcode"], "REFUSED", "{refused:#}");

    let broken = lookup(&lines, "x.broken.test", "udp");
    assert_eq!(broken["outcome"], "dns_error", "{broken:#}");
    assert_eq!(broken["dns"]["rcode"], "SERVFAIL", "{broken:#}");
    assert!(
        broken["hint"].as_str().unwrap().contains("SERVFAIL"),
        "{broken:#}"
    );

    // Nobody answered: no_reply, naming the query (a --dns-port server).
    let silent = lookup(&lines, "silent.test", "udp");
    assert_eq!(silent["outcome"], "no_reply", "{silent:#}");
    assert_eq!(silent["dns"]["rcode"], Value::Null, "{silent:#}");
    assert!(
        silent["hint"].as_str().unwrap().contains("never answered"),
        "{silent:#}"
    );

    // A search-path walk is one lookup with its tries: it reads ok, and
    // the NXDOMAIN of its first try is no failure of its own.
    let walk = lookup(&lines, "api.default.svc.cluster.local", "udp");
    assert_eq!(walk["outcome"], "ok", "{walk:#}");
    let tries: Vec<(&str, &str)> = walk["dns"]["tries"]
        .as_array()
        .unwrap_or_else(|| panic!("{walk:#}"))
        .iter()
        .map(|t| {
            (
                t["qname"].as_str().unwrap(),
                t["rcode"].as_str().unwrap_or("-"),
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
            .all(|c| c["dns"]["qname"] != "api.other.svc.cluster.local"),
        "{:#?}",
        connections(&lines)
    );

    // Packets carry their message too: the query and the response.
    let msgs: Vec<&Value> = packets(&lines)
        .into_iter()
        .filter(|p| p["dns"]["qname"] == "missing.default.svc.cluster.local")
        .collect();
    assert!(
        msgs.iter().any(|p| p["dns"]["rcode"] == Value::Null)
            && msgs.iter().any(|p| p["dns"]["rcode"] == "NXDOMAIN"),
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
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(netflow_tests::json::parse_line)
        .collect();
    for name in [
        "missing.default.svc.cluster.local",
        "outside.example",
        "silent.test",
    ] {
        assert_eq!(
            lookup(&replayed, name, "udp"),
            lookup(&lines, name, "udp"),
            "{name}"
        );
    }
    let app = replayed_dashboard(&rec);
    let screen = dashboard_screen(&app.lock().unwrap());
    // The selected flow (the last lookup, through the VIP) shows its
    // message; the server's row counts its failed lookups.
    assert!(
        screen.contains("dns A? web.default.svc.cluster.local -> NOERROR"),
        "{screen}"
    );
    assert!(screen.contains("dns_error"), "{screen}");
}
