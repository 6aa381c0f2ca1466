//! Drop reasons: counts per reason, with the hint.
use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Block, Borders, Row, Table},
    Frame,
};

use super::state::State;

pub fn draw(f: &mut Frame, area: Rect, state: &State) {
    let mut reasons: Vec<(&String, &(u64, String))> = state.drops.iter().collect();
    reasons.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
    let rows = reasons.into_iter().map(|(r, (n, hint))| {
        Row::new(vec![n.to_string(), r.clone(), hint.clone()])
            .style(Style::default().fg(Color::Red))
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(18),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(["count", "reason", "hint"]).style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" drop reasons "),
    );
    f.render_widget(table, area);
}
