//! hyper 0.14 answers a request it cannot parse (a bad request line or header, a URI too
//! long, headers over its buffer) itself, with an empty body, before any service sees the
//! request, and has no hook to change that answer. This socket wrapper recognises those
//! answers on their way out and gives them the API's JSON error body, so that every error
//! visiond sends has one shape.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The statuses hyper writes itself, with what they mean for the client.
const HYPER_ANSWERS: [(&str, &str); 3] = [
    (
        "400",
        "the request could not be parsed: its request line or a header is malformed",
    ),
    ("414", "the request URI is too long"),
    ("431", "the request headers are too large"),
];

/// Longer than any head hyper writes for a parse error (status line, length, date).
const MAX_HEAD: usize = 512;

pub struct JsonParseErrors<S> {
    inner: S,
    /// The JSON answer being written in place of hyper's, and how many of its bytes are out.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl<S> JsonParseErrors<S> {
    pub fn new(inner: S) -> Self {
        JsonParseErrors {
            inner,
            rewrite: None,
        }
    }
}

/// hyper's own answer in `data`, rewritten with a JSON body; None for anything else.
/// Only a whole head with `content-length: 0` and nothing after it qualifies: visiond's own
/// error answers always carry a body.
fn rewritten(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() > MAX_HEAD || !data.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(&data[..data.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line.strip_prefix("HTTP/1.")?.get(2..5)?;
    let (_, message) = HYPER_ANSWERS.iter().find(|(c, _)| *c == code)?;
    let headers: Vec<&str> = lines.collect();
    if !headers.contains(&"content-length: 0") {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut answer = format!("{status_line}\r\n");
    for header in headers.iter().filter(|h| **h != "content-length: 0") {
        answer.push_str(header);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    Some(answer.into_bytes())
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none() {
            match rewritten(data) {
                Some(answer) => self.rewrite = Some((answer, 0)),
                None => return Pin::new(&mut self.inner).poll_write(cx, data),
            }
        }
        // hyper offers the same bytes again after Pending: the rewrite goes on where it was,
        // and counts as `data` written once all of it is out.
        let this = &mut *self;
        let (answer, sent) = this.rewrite.as_mut().expect("set above");
        while *sent < answer.len() {
            match ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*sent..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *sent += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        this.rewrite = None;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_answers_get_a_json_body_and_their_other_headers() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 19:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(rewritten(hyper).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains("\r\ndate: Wed, 02 Dec 2026 19:00:00 GMT"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "the request URI is too long");
    }

    #[test]
    fn answers_with_a_body_or_another_status_pass_as_they_are() {
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\n\r\n{\"error\":\"x\"}";
        assert!(rewritten(own).is_none());
        let head_only = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\n\r\n";
        assert!(
            rewritten(head_only).is_none(),
            "a HEAD answer keeps its length"
        );
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(rewritten(ok).is_none());
    }
}
