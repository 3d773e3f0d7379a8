//! Pictures and video: the frame type, and (as they land) sources and codecs.

pub mod frame;

pub use frame::Frame;
