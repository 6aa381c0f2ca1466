//! The status bar (source, probes, events, losses, filter), the packets/s
//! sparkline and the key hints.
use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Sparkline},
    Frame,
};

use super::{state::State, App};

pub fn draw_top(f: &mut Frame, area: Rect, app: &App, state: &State) {
    let on = state.probes.iter().filter(|p| p.starts_with("on")).count();
    let mut spans = vec![
        Span::styled(
            " netflow ",
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
        ),
        Span::raw(format!(
            " {} | {} | probes {on}/{} on | events {} | ",
            state.source,
            state.selection,
            state.probes.len(),
            state.events
        )),
        Span::styled(
            format!("lost {}", state.lost),
            if state.lost > 0 {
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            },
        ),
    ];
    // Beside lost: what the memory budget made it complete early (said
    // before what a narrow terminal may cut off).
    if state.evicted > 0 {
        spans.push(Span::styled(
            format!(" | evicting: {}", state.evicted),
            Style::default().fg(Color::Yellow),
        ));
    }
    spans.push(Span::raw(format!(" | packets {}", state.packets)));
    if state.sampled > 0 {
        spans.push(Span::raw(format!(" | only counted {}", state.sampled)));
    }
    if state.folded_flows > 0 || state.skipped > 0 {
        spans.push(Span::raw(format!(
            " | folded {} flows ({} pkts), {} updates skipped",
            state.folded_flows, state.folded_packets, state.skipped
        )));
    }
    if app.frozen.is_some() {
        spans.push(Span::styled(
            " FROZEN ",
            Style::default().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn draw_sparkline(f: &mut Frame, area: Rect, state: &State) {
    let data: Vec<u64> = state.rate.iter().copied().collect();
    let last = data.last().copied().unwrap_or(0);
    let s = Sparkline::default()
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" packets/s (now {last}) ")),
        )
        .data(&data)
        .style(Style::default().fg(Color::Green));
    f.render_widget(s, area);
}

pub fn draw_bottom(f: &mut Frame, area: Rect, app: &App) {
    let line = if app.editing_filter {
        Line::from(vec![
            Span::styled(" filter: ", Style::default().fg(Color::Yellow)),
            Span::raw(format!("{}▏", app.filter)),
        ])
    } else {
        let filter = if app.filter.is_empty() {
            String::new()
        } else {
            format!(" | filter \"{}\"", app.filter)
        };
        Line::from(format!(
            " q quit  ? help  / filter  Esc clear  f freeze  j/k move  s sort  r reverse  m link-local{filter}"
        ))
    };
    f.render_widget(Paragraph::new(line), area);
}
