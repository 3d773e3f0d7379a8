//! The `rtsp://` source: an IP camera's H.264 through retina, interleaved in the RTSP
//! connection (`rtsp://`, `rtspt://`) or over UDP (`rtspu://`, as GStreamer spells it).
//! retina is async: each camera gets a one-thread tokio runtime inside the capture thread,
//! so a slow camera never holds up the pipeline. A camera that goes quiet or drops the
//! connection is an error, and the capture thread reconnects with backoff.

use super::h264::Decoder;
use super::source::Source;
use super::Frame;
use crate::settings::redact;
use anyhow::Context;
use futures_util::StreamExt;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat};
use std::time::Duration;
use url::Url;

/// No frame for this long: the camera is taken as gone.
const QUIET_LIMIT: Duration = Duration::from_secs(10);

/// Time given to retina's TEARDOWN when a camera is closed, so it frees its session.
const TEARDOWN_WAIT: Duration = Duration::from_millis(300);

pub struct Rtsp {
    runtime: tokio::runtime::Runtime,
    /// Taken only on drop.
    stream: Option<Demuxed>,
    decoder: Decoder,
}

/// Where to connect, with what credentials, over which transport.
#[derive(Debug, PartialEq)]
struct Target {
    url: Url,
    credentials: Option<Credentials>,
    udp: bool,
}

/// Splits the credentials out of the URI, so they reach only the camera's authentication
/// (never a log line or an error message, which show the URL).
fn target(uri: &str) -> anyhow::Result<Target> {
    let (scheme, rest) = uri.split_once("://").context("not a URL")?;
    let udp = match scheme {
        "rtsp" | "rtspt" => false,
        "rtspu" => true,
        other => {
            anyhow::bail!("{other}:// cameras are not supported; use rtsp://, rtspt:// or rtspu://")
        }
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    // The same split as the redaction's, so what is masked is exactly what is sent.
    let (credentials, address) = match redact::userinfo(uri) {
        Some(info) => (
            Some(Credentials {
                username: decode(info.user),
                password: decode(info.password.unwrap_or("")),
            }),
            info.rest,
        ),
        None => (None, rest),
    };
    let url = Url::parse(&format!("rtsp://{address}"))
        .map_err(|e| anyhow::anyhow!("not a camera URL: {e}"))?;
    Ok(Target {
        url,
        credentials,
        udp,
    })
}

impl Rtsp {
    pub fn open(uri: &str) -> anyhow::Result<Rtsp> {
        let target = target(uri)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stream = runtime
            .block_on(async { tokio::time::timeout(QUIET_LIMIT, connect(target)).await })
            .map_err(|_| anyhow::anyhow!("the camera did not answer within {QUIET_LIMIT:?}"))??;
        Ok(Rtsp {
            runtime,
            stream: Some(stream),
            decoder: Decoder::new()?,
        })
    }
}

async fn connect(target: Target) -> anyhow::Result<Demuxed> {
    let options = SessionOptions::default()
        .creds(target.credentials)
        .user_agent(format!("visiond/{}", env!("CARGO_PKG_VERSION")));
    let mut session = Session::describe(target.url, options).await?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        .context("the camera offers no H.264 video")?;
    let transport = if target.udp {
        Transport::Udp(Default::default())
    } else {
        Transport::Tcp(Default::default())
    };
    // Annex B with the parameter sets before each key frame: what the decoder takes as is.
    let setup = SetupOptions::default()
        .transport(transport)
        .frame_format(FrameFormat::SIMPLE);
    session.setup(video, setup).await?;
    Ok(session.play(PlayOptions::default()).await?.demuxed()?)
}

impl Source for Rtsp {
    fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            let stream = self.stream.as_mut().expect("taken only on drop");
            let item = self
                .runtime
                .block_on(async { tokio::time::timeout(QUIET_LIMIT, stream.next()).await })
                .map_err(|_| anyhow::anyhow!("no video from the camera for {QUIET_LIMIT:?}"))?
                .context("the camera ended the stream")??;
            if let CodecItem::VideoFrame(video) = item {
                if let Some(frame) = self.decoder.decode(video.data())? {
                    return Ok(frame);
                }
            }
        }
    }
}

impl Drop for Rtsp {
    fn drop(&mut self) {
        // The session sends TEARDOWN from a task it spawns on drop: that needs the runtime.
        let stream = self.stream.take();
        self.runtime.block_on(async move {
            drop(stream);
            tokio::time::sleep(TEARDOWN_WAIT).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let t = target("rtsp://admin:p%40ss@10.0.0.5:554/stream1?channel=2").unwrap();
        assert_eq!(t.url.as_str(), "rtsp://10.0.0.5:554/stream1?channel=2");
        let credentials = t.credentials.unwrap();
        assert_eq!(
            (credentials.username.as_str(), credentials.password.as_str()),
            ("admin", "p@ss")
        );
        assert!(!t.udp);
        let t = target("rtspu://cam/live").unwrap();
        assert_eq!(
            (t.url.as_str(), t.credentials, t.udp),
            ("rtsp://cam/live", None, true)
        );
        assert!(target("rtsps://cam/live").is_err());
        let t = target("rtsp://admin:pa/ss@w0rd@cam/live").unwrap();
        assert_eq!(t.url.as_str(), "rtsp://cam/live");
        assert_eq!(t.credentials.unwrap().password, "pa/ss@w0rd");
    }
}
