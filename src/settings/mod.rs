//! Settings: the schema, the file's parser, the one store that changes them, and the file
//! watcher that feeds it.

pub mod file;
pub mod load;
pub mod redact;
pub mod schema;
pub mod store;
pub mod typed;
pub mod values;
pub mod watch;
pub mod writeback;

pub use store::{Event, Source, Store, WriteError};
pub use typed::Settings;
