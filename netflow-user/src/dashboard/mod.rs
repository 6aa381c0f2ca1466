//! `netflow dashboard`: a live (or replayed) terminal view of many flows.
//! One file per screen region: [`flows`], [`detail`], [`drops`],
//! [`status`], [`help`]; [`state`] holds the data, this file the keys and
//! the loop.
pub mod detail;
pub mod drops;
pub mod flows;
pub mod help;
pub mod state;
pub mod status;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    Frame,
};

use self::state::{SortBy, State};
use crate::{
    correlate::{Note, Timeline},
    names::Names,
    output::{Sink, Stats},
    probes::ProbeStatus,
};

/// The dashboard's data and UI state.
#[derive(Debug, Default)]
pub struct App {
    pub state: State,
    /// What is shown while frozen.
    pub frozen: Option<State>,
    pub selected: usize,
    pub sort: SortBy,
    pub reverse: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub help: bool,
    pub quit: bool,
}

impl App {
    pub fn shown(&self) -> &State {
        self.frozen.as_ref().unwrap_or(&self.state)
    }

    pub fn key(&mut self, k: KeyEvent) {
        if k.kind != KeyEventKind::Press {
            return;
        }
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if self.editing_filter {
            match k.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return;
        }
        if self.help {
            // Any key closes the help popup (q still quits).
            self.help = false;
            if k.code != KeyCode::Char('q') {
                return;
            }
        }
        let rows = self
            .shown()
            .rows(&self.filter, self.sort, self.reverse)
            .len();
        match k.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Esc => {
                self.filter.clear();
                self.frozen = None;
            }
            KeyCode::Char('f') | KeyCode::Char(' ') => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some(self.state.snapshot()),
                }
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.selected = 0;
            }
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(rows.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(rows.saturating_sub(1)),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = rows.saturating_sub(1),
            _ => {}
        }
    }
}

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let [top, main, spark, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(8),
        Constraint::Length(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(main);
    let [detail_area, drops_area] =
        Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(right);
    let state = app.shown();
    let rows = state.rows(&app.filter, app.sort, app.reverse);
    let selected = rows
        .get(app.selected.min(rows.len().saturating_sub(1)))
        .copied();
    status::draw_top(f, top, app, state);
    flows::draw(f, left, &rows, app.selected, app.sort, app.reverse);
    detail::draw(f, detail_area, selected);
    drops::draw(f, drops_area, state);
    status::draw_sparkline(f, spark, state);
    status::draw_bottom(f, bottom, app);
    if app.help {
        help::draw(f);
    }
}

/// Feeds completed timelines from a pipeline into the dashboard.
pub struct DashboardSink(pub Arc<Mutex<App>>);

impl Sink for DashboardSink {
    fn start(&mut self, summary: &str, probes: &[ProbeStatus]) -> std::io::Result<()> {
        let mut app = self.0.lock().expect("dashboard state");
        app.state.selection = summary.to_string();
        app.state.probes = probes.iter().map(|p| p.to_string()).collect();
        Ok(())
    }

    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        self.0.lock().expect("dashboard state").state.add(tl, names);
        Ok(())
    }

    fn note(&mut self, _n: &Note, _names: &Names) -> std::io::Result<()> {
        Ok(())
    }

    fn connection(
        &mut self,
        c: &crate::connections::Connection,
        _names: &Names,
    ) -> std::io::Result<()> {
        self.0.lock().expect("dashboard state").state.connection(c);
        Ok(())
    }

    fn progress(&mut self, s: &Stats) {
        let mut app = self.0.lock().expect("dashboard state");
        app.state.events = s.events;
        app.state.lost = s.lost;
    }

    fn stats(&mut self, s: &Stats) -> std::io::Result<()> {
        self.progress(s);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The terminal loop: draw, read keys, until `q`/Ctrl-C or `stop` says so.
/// The terminal is restored on every way out, panics included.
pub fn run_ui(app: Arc<Mutex<App>>, stop: impl Fn() -> bool) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        loop {
            {
                let a = app.lock().expect("dashboard state");
                if a.quit || stop() {
                    return Ok(());
                }
                terminal.draw(|f| draw(f, &a))?;
            }
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    app.lock().expect("dashboard state").key(k);
                }
            }
        }
    })();
    ratatui::try_restore()?;
    result
}
