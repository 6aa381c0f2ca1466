//! The `?` help popup.
use ratatui::{
    layout::{Constraint, Flex, Layout},
    widgets::{Block, Borders, Clear, Paragraph},
    Frame,
};

const KEYS: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    ("/", "filter: words of a row, verdict, outcome, cause"),
    ("Esc", "clear the filter, unfreeze"),
    ("f, space", "freeze / unfreeze the view"),
    ("j/k, ↓/↑", "move; PgDn/PgUp by 10, g/G first/last"),
    ("s", "sort by the next column"),
    ("r", "reverse the sort"),
    ("c", "per connection / grouped by peer and port"),
    ("m", "show / fold link-local and multicast flows"),
    ("Enter", "a group's connections, a folded row's flows"),
];

pub fn draw(f: &mut Frame) {
    let [area] = Layout::horizontal([Constraint::Length(60)])
        .flex(Flex::Center)
        .areas(f.area());
    let [area] = Layout::vertical([Constraint::Length(KEYS.len() as u16 + 2)])
        .flex(Flex::Center)
        .areas(area);
    let text: Vec<String> = KEYS
        .iter()
        .map(|(k, what)| format!(" {k:<12} {what}"))
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(text.join("\n"))
            .block(Block::default().borders(Borders::ALL).title(" keys ")),
        area,
    );
}
