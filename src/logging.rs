//! Logs to stderr through tracing-subscriber, one line an event (journald adds the time).
//! `RUST_LOG` wins over `[log] level`; otherwise the level follows the config live.

use std::io::IsTerminal;
use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter, Registry};

pub struct LogLevel {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

pub fn init(level: &str) -> LogLevel {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok());
    let fixed = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| filter_for(level));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
    LogLevel {
        handle: (!fixed).then_some(handle),
    }
}

impl LogLevel {
    pub fn set(&self, level: &str) {
        if let Some(handle) = &self.handle {
            let _ = handle.reload(filter_for(level));
        }
    }
}

fn filter_for(level: &str) -> EnvFilter {
    // Our own crate at the chosen level; chatty dependencies one step quieter.
    EnvFilter::new(format!("warn,visiond={level}"))
}
