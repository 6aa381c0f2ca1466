//! The selected flow: the hop timeline of its latest packet, and of its
//! latest dropped one, with NAT and encapsulation as `trace` shows them.
use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
    Frame,
};

use super::state::Flow;
use netflow_schema::Packet;

fn timeline_lines(title: &str, t: &Packet, out: &mut Vec<Line<'static>>) {
    let flags = t
        .hops
        .iter()
        .find_map(|h| h.tcp_flags.as_deref())
        .map(|f| format!(" [{f}]"))
        .unwrap_or_default();
    out.push(Line::from(Span::styled(
        format!(
            "{}{flags}",
            format!("{title}: {}", t.verdict).to_lowercase()
        ),
        Style::default().add_modifier(Modifier::BOLD),
    )));
    let t0 = t.hops.first().map(|h| h.ts_ns).unwrap_or(0);
    for h in &t.hops {
        // Every field named, none skipped with `..`: a hop field added to
        // the schema fails to compile here until this pane shows it (or
        // says why not).
        let netflow_schema::Hop {
            ts_ns,
            point,
            ifname,
            ifindex: _,
            netns,
            netns_name,
            // On the device column of `trace`; the pane is narrower.
            master: _,
            // Implied by the point (rx: ingress, tx: egress).
            dir: _,
            // The packet's tuple is the flow's row; a change shows as NAT.
            src: _,
            dst: _,
            sport: _,
            dport: _,
            len: _,
            // The packet's, on its title line.
            tcp_flags: _,
            encap,
            hook,
            // Early or late: the timeline's order says it.
            stage: _,
            nat,
            table,
            chain,
            icmp,
            route,
        } = h;
        let mut s = format!(
            "+{:>8.1}µs {:<9} {:<10} {}",
            ts_ns.saturating_sub(t0) as f64 / 1000.0,
            point,
            if ifname.is_empty() { "-" } else { ifname },
            netns_name.clone().unwrap_or_else(|| netns.to_string()),
        );
        if let Some(hook) = hook {
            s.push_str(&format!(" {}", hook.to_uppercase()));
        }
        if let (Some(table), Some(chain)) = (table, chain) {
            s.push_str(&format!(" {table}/{chain}"));
        }
        out.push(Line::from(s));
        // Translations, tunnels, routes and ICMP errors on their own line,
        // so they never wrap.
        if let Some(n) = nat {
            out.push(Line::from(Span::styled(
                format!("            {}", crate::output::view::nat_words(n)),
                Style::default().fg(Color::Yellow),
            )));
        }
        if let Some(e) = encap {
            let kind = format!("{:?}", e.kind).to_lowercase();
            let vni = e.vni.map(|v| format!(" vni {v}")).unwrap_or_default();
            out.push(Line::from(format!(
                "            {kind} {} -> {}{vni}",
                e.outer_src, e.outer_dst
            )));
        }
        if let Some(r) = route {
            let mut l = format!("            table {}", r.table);
            if let Some(gw) = r.gw {
                l.push_str(&format!(" via {gw}"));
            }
            if let Some(oif) = &r.oif {
                l.push_str(&format!(" dev {oif}"));
            }
            let style = match &r.error {
                Some(e) => {
                    l.push_str(&format!(": {e}"));
                    Style::default().fg(Color::Red)
                }
                None => Style::default(),
            };
            out.push(Line::from(Span::styled(l, style)));
        }
        if let Some(i) = icmp {
            let mut l = format!("            ICMP {}/{} {}", i.icmp_type, i.code, i.what);
            if let Some(mtu) = i.mtu {
                l.push_str(&format!(", MTU {mtu}"));
            }
            out.push(Line::from(Span::styled(l, Style::default().fg(Color::Red))));
        }
    }
    if let Some(d) = &t.dns {
        out.push(Line::from(Span::styled(
            format!("dns {}", crate::output::dns::packet_words(d)),
            Style::default().fg(Color::Cyan),
        )));
    }
    if let Some(d) = &t.drop {
        out.push(Line::from(Span::styled(
            format!("dropped: {} at {}", d.reason, d.location),
            Style::default().fg(Color::Red),
        )));
        out.push(Line::from(format!("hint: {}", d.hint)));
    }
}

pub fn draw(f: &mut Frame, area: Rect, flow: Option<&Flow>) {
    let mut lines = Vec::new();
    match flow {
        None => lines.push(Line::from("no flow selected")),
        Some(fl) => {
            lines.push(Line::from(Span::styled(
                fl.key.to_string(),
                Style::default().fg(Color::Cyan),
            )));
            lines.push(Line::from(format!(
                "{} pkts, {} bytes, p50 {:.1} µs, p99 {:.1} µs",
                fl.packets,
                fl.bytes,
                fl.median_us(),
                fl.p99_us()
            )));
            if let Some(c) = &fl.cause {
                lines.push(Line::from(Span::styled(
                    format!("cause: {c}"),
                    Style::default().fg(Color::Red),
                )));
            }
            timeline_lines("latest packet", &fl.latest, &mut lines);
            if let Some(d) = &fl.latest_drop {
                lines.push(Line::from(""));
                timeline_lines("latest dropped packet", d, &mut lines);
            }
        }
    }
    let p = Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(" timeline "))
        .wrap(Wrap { trim: false });
    f.render_widget(p, area);
}
