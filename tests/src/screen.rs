//! The dashboard on a recording, rendered off screen (ratatui's
//! TestBackend): what a user would see, as text.
use std::sync::{Arc, Mutex};

use netflow::{
    correlate::filter::FlowFilter,
    output::dashboard::{draw, App, DashboardSink, Inbox},
    replay,
};
use ratatui::{backend::TestBackend, Terminal};

/// The dashboard with a recording replayed into it.
pub fn replayed_dashboard(path: &std::path::Path) -> Arc<Mutex<App>> {
    let app = Arc::new(Mutex::new(App::default()));
    let inbox = Arc::new(Inbox::default());
    let r = replay::replay(
        path,
        Box::new(DashboardSink(inbox.clone())),
        FlowFilter::default(),
    )
    .unwrap();
    {
        let mut a = app.lock().unwrap();
        a.absorb(&inbox);
        a.state.source = "replay fixture".into();
        a.state.selection = r.meta.summary;
        a.state.probes = r.meta.probes;
    }
    app
}

/// The screen, 160x45, as lines of text.
pub fn dashboard_screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(160, 45)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
