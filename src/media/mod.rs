//! Pictures and video: the frame type, the latest-frame slot, and the sources.

pub mod file;
pub mod frame;
pub mod h264;
pub mod images;
pub mod mp4;
pub mod rtsp;
pub mod slot;
pub mod source;
pub mod test_pattern;
pub mod v4l2;
pub mod webrtc;

pub use frame::Frame;
