//! The flows table.
use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Block, Borders, Cell, Row, Table, TableState},
    Frame,
};

use super::state::{Flow, SortBy};
use netflow_schema::Verdict;

use crate::correlate::connections::Outcome;

fn port(p: Option<u16>) -> String {
    p.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
}

/// The verdict's word (a drop in capitals) and colour.
fn verdict(v: Verdict) -> (String, Color) {
    let color = match v {
        Verdict::Delivered => Color::Green,
        Verdict::Forwarded => Color::Cyan,
        Verdict::Dropped => Color::Red,
        Verdict::Unclaimed | Verdict::Unknown => Color::Gray,
    };
    let word = v.as_str();
    match v {
        Verdict::Dropped => (word.to_uppercase(), color),
        _ => (word.to_string(), color),
    }
}

fn outcome(o: Option<Outcome>) -> (&'static str, Color) {
    match o {
        None => ("-", Color::Gray),
        Some(Outcome::Ok) => ("ok", Color::Green),
        Some(Outcome::Incomplete) => ("incomplete", Color::Yellow),
        Some(o) => (crate::output::view::outcome_name(o), Color::Red),
    }
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    rows: &[&Flow],
    selected: usize,
    sort: SortBy,
    reverse: bool,
) {
    let header = Row::new([
        "endpoint", "peer", "proto", "ports", "pkts", "bytes", "drops", "verdict", "outcome",
        "p50 µs", "p99 µs",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let body = rows.iter().map(|fl| {
        let k = fl.key;
        let (v, color) = verdict(fl.last_verdict);
        let (o, ocolor) = match &fl.group {
            None => {
                let (o, c) = outcome(fl.outcome);
                (o.to_string(), c)
            }
            Some(g) => match g.failed.iter().max_by_key(|(_, n)| **n) {
                Some((name, n)) => (format!("{name} {n}/{}", g.flows), Color::Red),
                None if g.ok > 0 => (format!("ok {}/{}", g.ok, g.flows), Color::Green),
                None => (format!("{} open", g.flows), Color::Gray),
            },
        };
        // A lookup's row names what it asked (not a group's: many names).
        let endpoint = match fl.latest.dns.as_ref().filter(|_| fl.group.is_none()) {
            Some(d) => format!(
                "{} {}? {}",
                fl.endpoint,
                d.qtype,
                d.qname.as_deref().unwrap_or("-")
            ),
            None => fl.endpoint.clone(),
        };
        Row::new(vec![
            Cell::from(endpoint),
            Cell::from(k.dst.to_string()),
            Cell::from(k.proto.to_string()),
            Cell::from(format!("{}→{}", port(k.sport), port(k.dport))),
            Cell::from(fl.packets.to_string()),
            Cell::from(fl.bytes.to_string()),
            Cell::from(fl.drops.to_string()).style(if fl.drops > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            }),
            Cell::from(v).style(Style::default().fg(color)),
            Cell::from(o).style(Style::default().fg(ocolor)),
            Cell::from(format!("{:.1}", fl.median_us())),
            Cell::from(format!("{:.1}", fl.p99_us())),
        ])
    });
    // Addresses and ports keep their width; the endpoint name gives way.
    let widths = [
        Constraint::Min(8),
        Constraint::Length(15),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(13),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    let grouped = rows.first().is_some_and(|r| r.group.is_some());
    let title = format!(
        " {} ({}) sorted by {}{} ",
        if grouped {
            "flows by peer and port (c: per connection)"
        } else {
            "flows"
        },
        rows.len(),
        sort.label(),
        if reverse { ", reversed" } else { "" }
    );
    let table = Table::new(body, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(title))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut st = TableState::default();
    if !rows.is_empty() {
        st.select(Some(selected.min(rows.len() - 1)));
    }
    f.render_stateful_widget(table, area, &mut st);
}
