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
    out.push(Line::from(Span::styled(
        format!("{title}: {}", t.verdict).to_lowercase(),
        Style::default().add_modifier(Modifier::BOLD),
    )));
    let t0 = t.hops.first().map(|h| h.ts_ns).unwrap_or(0);
    for h in &t.hops {
        let mut s = format!(
            "+{:>8.1}µs {:<9} {:<10} {}",
            h.ts_ns.saturating_sub(t0) as f64 / 1000.0,
            h.point,
            if h.ifname.is_empty() { "-" } else { &h.ifname },
            h.netns_name.clone().unwrap_or_else(|| h.netns.to_string()),
        );
        if let Some(hook) = &h.hook {
            s.push_str(&format!(" {}", hook.to_uppercase()));
        }
        out.push(Line::from(s));
        // Translations and tunnels on their own line, so they never wrap.
        if let Some(n) = &h.nat {
            out.push(Line::from(Span::styled(
                format!("            {}", crate::output::view::nat_words(n)),
                Style::default().fg(Color::Yellow),
            )));
        }
        if let Some(e) = &h.encap {
            let kind = format!("{:?}", e.kind).to_lowercase();
            let vni = e.vni.map(|v| format!(" vni {v}")).unwrap_or_default();
            out.push(Line::from(format!(
                "            {kind} {} -> {}{vni}",
                e.outer_src, e.outer_dst
            )));
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
