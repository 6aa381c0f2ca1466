//! Drop reasons: counts per reason, with the whole hint (wrapped, never cut).
use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Wrap},
    Frame,
};

use super::state::State;

pub fn draw(f: &mut Frame, area: Rect, state: &State) {
    let mut reasons: Vec<(&String, &(u64, String))> = state.drops.iter().collect();
    reasons.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
    let lines: Vec<Line> = reasons
        .into_iter()
        .map(|(r, (n, hint))| {
            Line::from(vec![
                Span::styled(
                    format!("{n:>5} {r}"),
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(": {hint}")),
            ])
        })
        .collect();
    let p = Paragraph::new(lines)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" drop reasons "),
        )
        .wrap(Wrap { trim: true });
    f.render_widget(p, area);
}
