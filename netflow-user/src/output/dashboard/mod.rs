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
    borrow::Cow,
    sync::{Arc, Mutex},
    time::Duration,
};

use ratatui::{
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    Frame,
};

use self::state::{row_key, FlowUpdate, RowKey, SortBy, State};
use crate::{
    correlate::connections::Outcome,
    correlate::{Note, Timeline},
    decode::names::Names,
    decode::packet::Tuple,
    output::{probe_line, Run},
    output::{Sink, Stats},
};

/// The dashboard's data and UI state.
#[derive(Debug, Default)]
pub struct App {
    pub state: State,
    /// What is shown while frozen.
    pub frozen: Option<State>,
    /// The selected row: by its key, so it stays on its connection (or
    /// group) whatever the order does; by position only until a row is
    /// shown, or when its row is gone.
    pub selected: usize,
    pub selected_key: Option<RowKey>,
    pub sort: SortBy,
    pub reverse: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub help: bool,
    pub quit: bool,
    /// One row per connection instead of per "endpoint → peer:port" group.
    pub per_connection: bool,
    /// Link-local and multicast flows shown (folded into a row per scope
    /// otherwise).
    pub local: bool,
    /// Draw without colours ([`no_color_asked`]).
    pub no_color: bool,
}

impl App {
    pub fn shown(&self) -> &State {
        self.frozen.as_ref().unwrap_or(&self.state)
    }

    /// The rows on screen, in order: flows (or groups), then the folded
    /// link-local and multicast rows.
    pub fn rows(&self) -> Vec<Cow<'_, state::Flow>> {
        let st = self.shown();
        let mut rows: Vec<Cow<'_, state::Flow>> = if self.per_connection {
            st.rows(&self.filter, self.sort, self.reverse, self.local)
                .into_iter()
                .map(Cow::Borrowed)
                .collect()
        } else {
            st.groups(&self.filter, self.sort, self.reverse, self.local)
                .into_iter()
                .map(Cow::Owned)
                .collect()
        };
        if !self.local {
            rows.extend(st.folded(&self.filter).into_iter().map(Cow::Owned));
        }
        rows
    }

    /// Where the selected row is now.
    pub fn selected_index(&self, rows: &[Cow<'_, state::Flow>]) -> usize {
        self.selected_key
            .as_ref()
            .and_then(|k| rows.iter().position(|r| row_key(r) == *k))
            .unwrap_or(self.selected)
            .min(rows.len().saturating_sub(1))
    }

    /// Select the row at `i` (clamped), and remember it by its key.
    fn select(&mut self, i: usize) {
        let (i, key) = {
            let rows = self.rows();
            let i = i.min(rows.len().saturating_sub(1));
            (i, rows.get(i).map(|r| row_key(r)))
        };
        self.selected = i;
        self.selected_key = key;
    }

    /// Back to the first row (a new filter, sort or view).
    fn reselect(&mut self) {
        self.selected_key = None;
        self.select(0);
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
            self.reselect();
            return;
        }
        if self.help {
            // Any key closes the help popup (q still quits).
            self.help = false;
            if k.code != KeyCode::Char('q') {
                return;
            }
        }
        let (at, rows) = {
            let rows = self.rows();
            (self.selected_index(&rows), rows.len())
        };
        let last = rows.saturating_sub(1);
        match k.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Esc => {
                self.filter.clear();
                self.frozen = None;
                self.select(at);
            }
            KeyCode::Char('f') | KeyCode::Char(' ') => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some(self.state.snapshot()),
                }
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.reselect();
            }
            KeyCode::Char('r') => self.reverse = !self.reverse,
            KeyCode::Char('c') => {
                self.per_connection = !self.per_connection;
                self.reselect();
            }
            KeyCode::Char('m') => {
                self.local = !self.local;
                self.reselect();
            }
            KeyCode::Enter => {
                let row = self.rows().get(at).map(|r| r.clone().into_owned());
                match row {
                    // A folded row: the flows it holds.
                    Some(r) if r.folded.is_some() => {
                        self.local = true;
                        self.reselect();
                    }
                    // Into a group: its connections.
                    Some(g) if !self.per_connection => {
                        self.filter = format!(
                            "-> {}",
                            crate::decode::packet::endpoint((g.key.dst, g.key.dport))
                        );
                        self.per_connection = true;
                        self.reselect();
                    }
                    _ => {}
                }
            }
            KeyCode::Down | KeyCode::Char('j') => self.select((at + 1).min(last)),
            KeyCode::Up | KeyCode::Char('k') => self.select(at.saturating_sub(1)),
            KeyCode::PageDown => self.select((at + 10).min(last)),
            KeyCode::PageUp => self.select(at.saturating_sub(10)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(last),
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
        Layout::horizontal([Constraint::Percentage(66), Constraint::Percentage(34)]).areas(main);
    let [detail_area, drops_area] =
        Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(right);
    let state = app.shown();
    let rows = app.rows();
    let at = app.selected_index(&rows);
    let view = flows::View {
        sort: app.sort,
        reverse: app.reverse,
        grouped: !app.per_connection,
        local: app.local,
    };
    status::draw_top(f, top, app, state);
    flows::draw(f, left, &rows, at, view);
    detail::draw(f, detail_area, rows.get(at).map(|r| r.as_ref()));
    drops::draw(f, drops_area, state);
    status::draw_sparkline(f, spark, state);
    status::draw_bottom(f, bottom, app);
    if app.help {
        help::draw(f);
    }
    if app.no_color {
        // Shapes and emphasis stay (the selection is reversed), colours go.
        for cell in f.buffer_mut().content.iter_mut() {
            cell.set_fg(ratatui::style::Color::Reset);
            cell.set_bg(ratatui::style::Color::Reset);
        }
    }
}

/// NO_COLOR (https://no-color.org): set and not empty.
pub fn no_color_asked() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Updates from the tracer waiting for the screen: the tracer only ever
/// takes this short lock (never the one held while drawing), and a screen
/// that falls behind by more than [`MAX_PENDING`] updates has the excess
/// counted, not queued.
#[derive(Default)]
pub struct Inbox(Mutex<Pending>);

#[derive(Default)]
struct Pending {
    updates: Vec<Update>,
    skipped: u64,
}

enum Update {
    Start(String, Vec<String>),
    Flow(Box<FlowUpdate>),
    Outcome(Tuple, Outcome, Option<String>),
    /// Events, lost, only counted, evicted.
    Progress(u64, u64, u64, u64),
}

/// Updates waiting at most (a screen this far behind skips the rest).
pub const MAX_PENDING: usize = 10_000;

impl Inbox {
    fn push(&self, u: Update) {
        let mut p = self.0.lock().expect("dashboard inbox");
        if p.updates.len() >= MAX_PENDING && matches!(u, Update::Flow(_)) {
            p.skipped += 1;
        } else {
            p.updates.push(u);
        }
    }
}

impl App {
    /// Apply what the tracer sent since the last frame.
    pub fn absorb(&mut self, inbox: &Inbox) {
        let (updates, skipped) = {
            let mut p = inbox.0.lock().expect("dashboard inbox");
            (std::mem::take(&mut p.updates), p.skipped)
        };
        let st = &mut self.state;
        st.skipped = skipped;
        for u in updates {
            match u {
                Update::Start(summary, probes) => {
                    st.selection = summary;
                    st.probes = probes;
                }
                Update::Flow(f) => st.apply(*f),
                Update::Outcome(t, o, cause) => st.connection(t, o, cause),
                Update::Progress(events, lost, sampled, evicted) => {
                    st.events = events;
                    st.lost = lost;
                    st.sampled = sampled;
                    st.evicted = evicted;
                }
            }
        }
        // The first row shown becomes the selection: it then stays on its
        // connection, wherever new packets move it.
        if self.selected_key.is_none() {
            let at = self.selected;
            self.select(at);
        }
    }
}

/// A failed connection's cause in short (see [`state::short_cause`]).
fn connection_cause(
    c: &crate::correlate::connections::Connection,
    names: &Names,
) -> Option<String> {
    let v = crate::output::view::connection_view(c, names);
    let drop = netflow_schema::Drop {
        reason: v.reason.clone().unwrap_or_default(),
        likely: v.likely,
        location: v.location.unwrap_or_default(),
        hint: String::new(),
        hook: v.hook,
        rule: v.rule,
        k8s: v.k8s,
        policies: None,
        cause: v.cause,
        ruled_out: Vec::new(),
    };
    let short = state::short_cause(&drop, Some(c.outcome));
    (!short.is_empty()).then_some(short)
}

/// Feeds completed timelines from a pipeline into the dashboard's inbox.
pub struct DashboardSink(pub Arc<Inbox>);

impl Sink for DashboardSink {
    fn start(&mut self, run: &Run) -> std::io::Result<()> {
        self.0.push(Update::Start(
            run.start.summary.clone(),
            run.start.probes.iter().map(probe_line).collect(),
        ));
        Ok(())
    }

    fn timeline(&mut self, tl: &Timeline, names: &Names) -> std::io::Result<()> {
        if let Some(u) = FlowUpdate::new(tl, names) {
            self.0.push(Update::Flow(Box::new(u)));
        }
        Ok(())
    }

    fn note(&mut self, _n: &Note, _names: &Names) -> std::io::Result<()> {
        Ok(())
    }

    fn connection(
        &mut self,
        c: &crate::correlate::connections::Connection,
        names: &Names,
    ) -> std::io::Result<()> {
        let cause = (c.outcome != Outcome::Ok)
            .then(|| connection_cause(c, names))
            .flatten();
        self.0.push(Update::Outcome(c.tuple, c.outcome, cause));
        Ok(())
    }

    fn progress(&mut self, s: &Stats) {
        self.0
            .push(Update::Progress(s.events, s.lost, s.sampled, s.evicted));
    }

    fn stats(&mut self, s: &Stats, _now: u64) -> std::io::Result<()> {
        self.progress(s);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The terminal loop: draw, read keys, until `q`/Ctrl-C or `stop` says so.
/// The terminal is restored on every way out, panics included.
pub fn run_ui(
    app: Arc<Mutex<App>>,
    inbox: Arc<Inbox>,
    stop: impl Fn() -> bool,
) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        loop {
            {
                let mut a = app.lock().expect("dashboard state");
                if a.quit || stop() {
                    return Ok(());
                }
                a.absorb(&inbox);
                terminal.draw(|f| draw(f, &a))?;
            }
            // Short: the tracer's updates are absorbed every frame, keep them few.
            if event::poll(Duration::from_millis(50))? {
                if let Event::Key(k) = event::read()? {
                    app.lock().expect("dashboard state").key(k);
                }
            }
        }
    })();
    ratatui::try_restore()?;
    result
}
