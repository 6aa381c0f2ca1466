//! Readable timelines: a header per packet, one line per hop.
use std::io::Write;

use netflow_common::Point;

use super::view::{
    connection_view, icmp_view, nat_view, nat_words, point_label, route_view, rule_view,
    timeline_drop_view, verdict_name, where_words,
};
use super::{Sink, Stats};
use crate::{
    correlate::connections::{Connection, DirCounts},
    correlate::{tcp_state_name, Hop, Note, NoteKind, Timeline, Verdict},
    decode::names::Names,
    decode::packet::{EncapKind, Tuple},
    output::diagnose::hook_name,
};

pub struct Text {
    out: Box<dyn Write + Send>,
}

impl Text {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out }
    }
}

impl Sink for Text {
    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        let first = tl.tuple();
        let head = match first {
            Some(t) => t.to_string(),
            None => "non-IP packet".into(),
        };
        let detail = tl
            .hops
            .iter()
            .find_map(|h| h.packet.as_ref())
            .map(|p| {
                let mut s = String::new();
                if let Some(f) = &p.tcp_flags {
                    s.push_str(&format!(" [{f}]"));
                    if let Some(seq) = p.ids.tcp_seq {
                        s.push_str(&format!(" seq {seq}"));
                    }
                }
                if let Some((ty, id, seq)) = p.ids.icmp {
                    s.push_str(&format!(" type {ty} id {id} seq {seq}"));
                }
                if let Some(id) = p.ids.ip_id {
                    s.push_str(&format!(" ipid {id}"));
                }
                s
            })
            .unwrap_or_default();
        let detail = match tl.dns.as_deref() {
            Some(m) => format!("{detail} dns {}", crate::output::dns::message_words(m)),
            None => detail,
        };
        let incomplete = if tl.incomplete {
            " (incomplete: events lost)"
        } else {
            ""
        };
        writeln!(
            self.out,
            "{head}{detail}  => {}{incomplete}",
            verdict_name(tl.verdict).to_uppercase()
        )?;
        let t0 = tl.hops.first().map(|h| h.ts_ns).unwrap_or(0);
        let mut last_tuple: Option<Tuple> = first;
        for h in &tl.hops {
            // Every field named, none skipped with `..`: a hop field added
            // to the timeline fails to compile here until `trace` shows it
            // (or says why not).
            let Hop {
                ts_ns,
                point,
                // The address that joins a packet's hops; no reader's business.
                skb: _,
                netns,
                ifindex,
                ifname,
                // The packet line has its length.
                len: _,
                mark: _,
                hook,
                pf: _,
                packet,
                // pcapng's.
                data: _,
                nat,
                nft,
                icmp,
                rule,
                // Shown through `route_view`.
                route: _,
            } = h;
            let delta = ts_ns.saturating_sub(t0) as f64 / 1000.0;
            let dev = match (ifname.as_str(), names.master(*netns, *ifindex)) {
                ("", _) => "-".to_string(),
                (d, Some(m)) => format!("{d} (port of {m})"),
                (d, None) => d.to_string(),
            };
            let mut line = format!(
                "  +{delta:>9.3}us  {:<9} {dev:<24} netns {:<12}",
                point_label(*point),
                names.netns_label(*netns),
            );
            if matches!(point, Point::NfEarly | Point::NfLate | Point::NftChain) {
                line.push_str(&format!("  {}", hook_name(*hook).to_uppercase()));
            }
            if let Some((table, chain)) = nft {
                line.push_str(&format!(" table {table} chain {chain}"));
            }
            if let Some(n) = nat {
                line.push_str(&format!("  {}", nat_words(&nat_view(*n, rule.as_deref()))));
            }
            if let Some(p) = packet {
                if Some(p.tuple) != last_tuple && nat.is_none() {
                    line.push_str(&format!("  now {}", p.tuple));
                }
                last_tuple = Some(p.tuple);
                if let Some(e) = p.encap {
                    let kind = match e.kind {
                        EncapKind::Vxlan => "vxlan",
                        EncapKind::Ipip => "ipip",
                    };
                    line.push_str(&format!("  {kind} {} -> {}", e.outer_src, e.outer_dst));
                    if let Some(vni) = e.vni {
                        line.push_str(&format!(" vni {vni}"));
                    }
                }
            }
            if let Some(r) = route_view(h) {
                line.push_str(&format!("  table {}", r.table));
                if let Some(gw) = r.gw {
                    line.push_str(&format!(" via {gw}"));
                }
                if let Some(e) = r.error {
                    line.push_str(&format!(": {e}"));
                }
            }
            if let Some(e) = icmp.as_ref().map(icmp_view) {
                line.push_str(&format!("  ICMP {}/{} {}", e.icmp_type, e.code, e.what));
                if let Some(mtu) = e.mtu {
                    line.push_str(&format!(", MTU {mtu}"));
                }
            }
            writeln!(self.out, "{}", line.trim_end())?;
            if let Some(r) = rule {
                writeln!(
                    self.out,
                    "  {:>12}  rule: {}",
                    "",
                    rule_line(&rule_view(&r.hit))
                )?;
            }
        }
        if let (Some(d), Some(v)) = (tl.drop, timeline_drop_view(tl, names)) {
            let reason = crate::output::diagnose::reason_words(
                &names.reason(d.reason),
                &names.location(d.location),
            );
            let hook = tl.drop_hook.map(|(h, _)| h);
            let at = hook
                .map(|h| format!(" in {}", hook_name(h).to_uppercase()))
                .unwrap_or_default();
            writeln!(
                self.out,
                "  dropped{at}: {reason} at {}",
                names.location(d.location)
            )?;
            if let Some(r) = &v.rule {
                writeln!(self.out, "  rule: {}", rule_line(r))?;
            }
            writeln!(self.out, "  hint: {}", v.hint)?;
        }
        if let Some(d) = tl.after {
            let location = names.location(d.location);
            let what = if tl.verdict == Verdict::Unclaimed {
                "no socket here listens for this group packet"
            } else if d.purged && tl.verdict != Verdict::Delivered {
                "from a closing socket's queue, not a drop on its path"
            } else {
                "after delivery, not a drop on its path"
            };
            writeln!(
                self.out,
                "  freed: {} at {location} ({what})",
                names.reason(d.reason)
            )?;
        }
        if tl.verdict == Verdict::Unknown {
            if let Some(h) = tl.hops.last() {
                writeln!(
                    self.out,
                    "  last seen: {} {} in netns {}",
                    point_label(h.point),
                    if h.ifname.is_empty() { "-" } else { &h.ifname },
                    names.netns_label(h.netns)
                )?;
            }
        }
        Ok(())
    }

    fn connection(&mut self, c: &Connection, names: &Names) -> std::io::Result<()> {
        let j = connection_view(c, names);
        let nats: Vec<String> = j.translations.iter().map(nat_words).collect();
        let nat = if nats.is_empty() {
            String::new()
        } else {
            format!(" ({})", nats.join(", "))
        };
        let dir = |d: &DirCounts| {
            format!(
                "{} pkts {} B, {} delivered, {} dropped",
                d.packets, d.bytes, d.delivered, d.dropped
            )
        };
        writeln!(
            self.out,
            "connection {}{nat}: {}  [fwd {}; rev {}]",
            c.tuple,
            crate::output::view::outcome_name(c.outcome).to_uppercase(),
            dir(&c.fwd),
            dir(&c.rev)
        )?;
        if let Some(d) = &j.dns {
            writeln!(self.out, "  dns {}", crate::output::dns::words(d))?;
        }
        if let Some(w) = &c.at {
            let mut line = format!("  {}", where_words(w, names));
            if let (Some(r), Some(l)) = (&j.reason, &j.location) {
                let r = crate::output::diagnose::reason_words(r, l);
                line.push_str(&format!(": {r} at {l}"));
            }
            writeln!(self.out, "{line}")?;
        }
        if let Some(h) = &j.hint {
            writeln!(self.out, "  hint: {h}")?;
        }
        Ok(())
    }

    fn note(&mut self, n: &Note, _names: &Names) -> std::io::Result<()> {
        let what = match (n.kind, n.tcp_state) {
            (NoteKind::Retransmit, 2) => {
                format!("SYN retransmitted ({} so far), no answer", n.count)
            }
            (NoteKind::Retransmit, s) => {
                format!("retransmission #{} ({})", n.count, tcp_state_name(s))
            }
            (NoteKind::Reset, s) => format!("RST sent by the socket ({})", tcp_state_name(s)),
            (NoteKind::ConnectFailed { err }, _) => format!(
                "connect failed: {}",
                match err {
                    0 => "the application gave up before an answer came".to_string(),
                    110 => "no answer to its SYNs (ETIMEDOUT)".to_string(),
                    111 => "refused: a RST answered (ECONNREFUSED)".to_string(),
                    _ => n.kind.error_name().unwrap_or("error").to_string(),
                }
            ),
        };
        writeln!(self.out, "{}: {what}", n.tuple)
    }

    fn stats(&mut self, _s: &Stats, _now: u64) -> std::io::Result<()> {
        // The run's summary goes to stderr (see trace.rs) for every format.
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A rule in one line: where it is, then its text (or its comment).
fn rule_line(r: &netflow_schema::Rule) -> String {
    let mut s = format!("{} {} {}", r.family, r.table, r.chain);
    match r.handle {
        Some(h) => s.push_str(&format!(" handle {h}")),
        None => s.push_str(" policy"),
    }
    if let Some(t) = &r.rule {
        s.push_str(&format!(": {t}"));
    } else if let Some(c) = &r.comment {
        s.push_str(&format!(": comment \"{c}\""));
    }
    s.push_str(&format!(" (verdict {})", r.verdict));
    s
}
