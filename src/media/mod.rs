//! Pictures and video: the frame type, the latest-frame slot, and the sources.

pub mod frame;
pub mod images;
pub mod slot;
pub mod source;
pub mod test_pattern;
pub mod webrtc;

pub use frame::Frame;
