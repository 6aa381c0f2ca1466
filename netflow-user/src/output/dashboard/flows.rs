//! The flows table.
use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Block, Borders, Cell, Row, Table, TableState},
    Frame,
};

use std::borrow::Cow;

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

/// How the rows are shown.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub sort: SortBy,
    pub reverse: bool,
    pub grouped: bool,
    /// Link-local and multicast flows unfolded.
    pub local: bool,
}

/// `s` in at most `width` columns, cut at a word with `…` (never mid-word,
/// unless a single word is wider than the column).
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out = String::new();
    for w in s.split(' ') {
        let next = if out.is_empty() {
            w.to_string()
        } else {
            format!("{out} {w}")
        };
        if next.chars().count() + 1 > width {
            break;
        }
        out = next;
    }
    if out.is_empty() {
        out = s.chars().take(width.saturating_sub(1)).collect();
    }
    out.push('…');
    out
}

/// The widest the cause column gets (the details pane has it whole).
const CAUSE_WIDTH: usize = 30;

pub fn draw(f: &mut Frame, area: Rect, rows: &[Cow<'_, Flow>], selected: usize, view: View) {
    // Bytes and the median are in the details pane: the failure's words
    // come first.
    let header = Row::new([
        "endpoint", "peer", "proto", "ports", "pkts", "drops", "verdict", "outcome", "cause",
        "p99 µs",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let outcomes: Vec<(String, Color)> = rows
        .iter()
        .map(|fl| match &fl.group {
            None => {
                let (o, c) = outcome(fl.outcome);
                (o.to_string(), c)
            }
            Some(g) => match g.failed.iter().max_by_key(|(_, n)| **n) {
                Some((name, n)) => (format!("{name} {n}/{}", g.flows), Color::Red),
                None if g.ok > 0 => (format!("ok {}/{}", g.ok, g.flows), Color::Green),
                None => (format!("{} open", g.flows), Color::Gray),
            },
        })
        .collect();
    let ports: Vec<String> = rows
        .iter()
        .map(|r| format!("{}→{}", port(r.key.sport), port(r.key.dport)))
        .collect();
    let peers: Vec<String> = rows
        .iter()
        .map(|r| match r.folded {
            Some(_) => "-".to_string(),
            None => r.key.dst.to_string(),
        })
        .collect();
    let widest = |v: &mut dyn Iterator<Item = usize>, min: usize| v.max().unwrap_or(0).max(min);
    // Every column as wide as its widest cell; the cause gets what is
    // left after the endpoint's least, cut at a word; the endpoint the rest.
    let fixed = [
        widest(&mut peers.iter().map(|p| p.chars().count()), 4),
        6,
        widest(&mut ports.iter().map(|p| p.chars().count()), 5),
        5,
        5,
        9,
        widest(&mut outcomes.iter().map(|(o, _)| o.chars().count()), 7),
        7,
    ];
    let columns = fixed.len() + 2;
    let room = (area.width as usize).saturating_sub(2 + columns - 1 + fixed.iter().sum::<usize>());
    let cause_width = room.saturating_sub(12).min(CAUSE_WIDTH);
    let causes: Vec<String> = rows
        .iter()
        .map(|fl| {
            fl.cause
                .as_deref()
                .map_or(String::new(), |c| fit(c, cause_width))
        })
        .collect();
    let cause_width = widest(&mut causes.iter().map(|c| c.chars().count()), 5);
    let body = rows.iter().enumerate().map(|(i, fl)| {
        let k = fl.key;
        let (v, color) = verdict(fl.last_verdict);
        let (o, ocolor) = outcomes[i].clone();
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
            Cell::from(peers[i].clone()),
            Cell::from(k.proto.to_string()),
            Cell::from(ports[i].clone()),
            Cell::from(fl.packets.to_string()),
            Cell::from(fl.drops.to_string()).style(if fl.drops > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            }),
            Cell::from(v).style(Style::default().fg(color)),
            Cell::from(o).style(Style::default().fg(ocolor)),
            Cell::from(causes[i].clone()).style(Style::default().fg(Color::Red)),
            Cell::from(format!("{:.1}", fl.p99_us())),
        ])
    });
    let widths = [
        Constraint::Min(8),
        Constraint::Length(fixed[0] as u16),
        Constraint::Length(fixed[1] as u16),
        Constraint::Length(fixed[2] as u16),
        Constraint::Length(fixed[3] as u16),
        Constraint::Length(fixed[4] as u16),
        Constraint::Length(fixed[5] as u16),
        Constraint::Length(fixed[6] as u16),
        Constraint::Length(cause_width as u16),
        Constraint::Length(fixed[7] as u16),
    ];
    let folded = rows.iter().filter(|r| r.folded.is_some()).count();
    let title = format!(
        " {} ({}) sorted by {}{}{} ",
        if view.grouped {
            "flows by peer and port (c: per connection)"
        } else {
            "flows"
        },
        rows.len() - folded,
        view.sort.label(),
        if view.reverse { ", reversed" } else { "" },
        if view.local {
            ", link-local shown (m folds)".to_string()
        } else if folded > 0 {
            format!(", {folded} link-local folded (m)")
        } else {
            String::new()
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn fit_cuts_at_a_word() {
        assert_eq!(super::fit("rule 4 in svc deny", 30), "rule 4 in svc deny");
        assert_eq!(
            super::fit("NetworkPolicy default/deny-db", 20),
            "NetworkPolicy…"
        );
        assert_eq!(super::fit("abcdefghij", 5), "abcd…");
    }
}
