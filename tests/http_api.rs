//! The API's HTTP promises (docs/reliability.md, "The API"): connections are capped and time
//! out without stopping the service, only this appliance's host names are answered, the
//! page needs the token when viewing does, only listed origins get CORS permission, and
//! errors and methods follow HTTP.

mod common;

use common::{expect_event, process_usage, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `request` as it is on a new connection and reads the answer to its end.
fn raw(server: &Server, request: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head["http/1.1 ".len()..][..3].parse().unwrap();
    (status, head, answer[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn json_error(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).expect("a JSON body");
    body["error"].as_str().expect("an error message").to_owned()
}

#[test]
fn idle_connections_beyond_the_cap_neither_stop_serving_nor_use_up_descriptors() {
    // As LimitNOFILE=128: the cap is half, 64 connections.
    const LIMIT: usize = 128;
    let server = Server::start_with_fd_limit(|t| t, LIMIT as u64);
    let events = server.events();
    expect_event(&events, "status", Duration::from_secs(5), |_| true);
    let (_, before, _) = process_usage(server.child.id());

    let idle: Vec<TcpStream> = (0..3 * LIMIT)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    let started = Instant::now();
    let (status, _, body) = raw(
        &server,
        "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(started.elapsed() < Duration::from_secs(5));

    // The connections past the cap were closed, so descriptors stay bounded...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, fds, _) = process_usage(server.child.id());
        if fds <= before + LIMIT / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{fds} descriptors open ({before} before the {} connections)",
            idle.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...and the event stream, which writes every second, was not one of them.
    while events.try_recv().is_ok() {}
    expect_event(&events, "status", Duration::from_secs(5), |_| true);
    assert!(
        !server.log_text().contains("Too many open files"),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_connection_that_sends_no_complete_request_is_closed() {
    let server = Server::start();
    let silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut partial = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    partial
        .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let started = Instant::now();
    for mut stream in [silent, partial] {
        // The header-read timeout is 5 s; the deadline leaves room for a loaded machine.
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest);
        assert!(closed.is_ok(), "still open after 15 s: {closed:?}");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed too soon"
    );
}

#[test]
fn requests_for_other_host_names_are_refused() {
    let server = Server::start_with(
        |t| {
            t.replace(
                "allowed_hosts = []",
                "allowed_hosts = [\"visiond.example.org\"]",
            )
        },
        &[],
    );
    let port = server.port;
    let write = |host: &str| {
        let host = format!("{host}:{port}");
        let origin = format!("http://{host}");
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", host.as_str()),
            ("Origin", origin.as_str()),
        ];
        server.request(
            "PUT",
            "/api/v1/config/server/title",
            &headers,
            Some("\"w\""),
        )
    };
    // A DNS-rebinding page: its own name, resolved to the appliance, Origin to match.
    let (status, body) = write("evil.example");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("server.allowed_hosts"), "{body}");
    let foreign_read = server.request(
        "GET",
        "/api/v1/config",
        &[("Host", &format!("evil.example:{port}"))],
        None,
    );
    assert_eq!(foreign_read.0, 403);
    assert_eq!(
        server.get_json("/api/v1/config/server/title"),
        json!("visiond")
    );

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim();
    for host in [
        "127.0.0.1",
        "[::1]",
        "localhost",
        hostname,
        &format!("{hostname}.local"),
        "visiond.example.org",
    ] {
        assert_eq!(write(host).0, 200, "Host: {host}");
    }
}

#[test]
fn with_auth_viewers_the_page_asks_for_the_token_and_shows_nothing_else() {
    let server = Server::start_with(
        |t| {
            t.replace("auth_token = \"\"", "auth_token = \"s3cret\"")
                .replace("auth_viewers = false", "auth_viewers = true")
                .replace("title = \"visiond\"", "title = \"private title\"")
        },
        &[],
    );
    let (status, prompt) = server.get("/");
    assert_eq!(status, 401);
    assert!(prompt.contains("id=\"token-form\""), "{prompt}");
    assert!(prompt.contains("/static/token.js"));
    for secret in ["private title", "data-key", "confidence_threshold"] {
        assert!(!prompt.contains(secret), "the prompt shows {secret}");
    }
    assert_eq!(server.get("/static/token.js").0, 200);
    let (status, page) = server.request("GET", "/", &[("Authorization", "Bearer s3cret")], None);
    assert_eq!(status, 200);
    assert!(page.contains("private title"));
}

#[test]
fn pages_on_listed_origins_may_use_the_api_and_whep_and_others_may_not() {
    let player = "http://player.example:8080";
    let server = Server::start_with(
        |t| {
            t.replace(
                "allowed_origins = []",
                &format!("allowed_origins = [\"{player}\"]"),
            )
        },
        &[],
    );
    let preflight = |origin: &str, path: &str| {
        raw(
            &server,
            &format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: content-type, authorization\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
    };
    // A WHEP player on the listed origin may offer (its preflight needs no token).
    let (status, head, _) = preflight(player, "/whep");
    assert_eq!(status, 204, "{head}");
    assert_eq!(header(&head, "access-control-allow-origin"), Some(player));
    assert_eq!(
        header(&head, "access-control-allow-methods"),
        Some("post, options")
    );
    assert_eq!(
        header(&head, "access-control-allow-headers"),
        Some("content-type, authorization")
    );
    assert_eq!(header(&head, "allow"), Some("post, options"));
    // Another origin learns the methods, but gets no permission.
    let (status, head, _) = preflight("https://evil.example", "/whep");
    assert_eq!(status, 204, "{head}");
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    let (status, _, body) = preflight(player, "/no/such/route");
    assert_eq!(status, 404);
    json_error(&body);

    // The answers themselves carry the permission, for the listed origin only.
    let read = |origin: &str| {
        raw(
            &server,
            &format!(
                "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
    };
    let (status, head, _) = read(player);
    assert_eq!(status, 200);
    assert_eq!(header(&head, "access-control-allow-origin"), Some(player));
    assert!(header(&head, "access-control-expose-headers").is_some_and(|h| h.contains("location")));
    let (_, head, _) = read("https://evil.example");
    assert_eq!(header(&head, "access-control-allow-origin"), None);

    // Writes: the listed origin may, any other is refused.
    let write = |origin: &str| {
        server.request(
            "PUT",
            "/api/v1/config/server/title",
            &[("Content-Type", "application/json"), ("Origin", origin)],
            Some("\"from the dashboard\""),
        )
    };
    assert_eq!(write(player).0, 200);
    let (status, body) = write("https://evil.example");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("server.allowed_origins"), "{body}");
    assert_eq!(
        server.get_json("/api/v1/config/server/title"),
        json!("from the dashboard")
    );
    // An origin that is not one is refused as a value.
    let (status, body) = server.put(
        "/api/v1/config/server/allowed_origins",
        "[\"player.example/path\"]",
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn methods_errors_and_bodies_follow_http() {
    let server = Server::start();
    // 405 names the methods the path takes.
    let (status, head, body) = raw(
        &server,
        "DELETE /api/v1/config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert_eq!(header(&head, "allow"), Some("get, head, patch, options"));
    json_error(&body);

    // HEAD is GET without the body.
    let (_, get_head, get_body) = raw(
        &server,
        "GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let (status, head, body) = raw(
        &server,
        "HEAD /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(
        header(&head, "content-length"),
        Some(get_body.len().to_string().as_str())
    );
    assert_eq!(
        header(&head, "content-type"),
        header(&get_head, "content-type")
    );

    // Unknown assets are JSON errors like every other 404.
    let (status, _, body) = raw(
        &server,
        "GET /static/missing.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
    assert!(json_error(&body).contains("missing.js"));

    // Chunked bodies are read (up to the same 64 KiB).
    let chunked = "PUT /api/v1/config/pose/confidence_threshold HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                   Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                   Connection: close\r\n\r\n2\r\n0.\r\n1\r\n4\r\n0\r\n\r\n";
    let (status, _, body) = raw(&server, chunked);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        server.get_json("/api/v1/config/pose/confidence_threshold"),
        json!(0.4)
    );
    let big = "1".repeat(70 * 1024);
    let oversized = format!(
        "PUT /api/v1/config/pose/confidence_threshold HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (status, _, body) = raw(&server, &oversized);
    assert_eq!(status, 413);
    json_error(&body);

    // What hyper answers itself, before any route sees the request, is JSON too.
    let malformed = "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n";
    let (status, _, body) = raw(&server, malformed);
    assert_eq!(status, 400);
    assert!(json_error(&body).contains("malformed"));
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let (status, _, body) = raw(&server, &long_uri);
    assert!(matches!(status, 414 | 431), "{status}");
    json_error(&body);
}

#[test]
fn the_openapi_patch_body_is_the_settings_tree_with_nulls() {
    let server = Server::start();
    let doc = server.get_json("/api/v1/openapi.json");
    let body = &doc["paths"]["/api/v1/config"]["patch"]["requestBody"]["content"];
    assert_eq!(
        body["application/merge-patch+json"]["schema"]["$ref"],
        json!("#/components/schemas/ConfigPatch")
    );
    let patch = &doc["components"]["schemas"]["ConfigPatch"];
    assert_eq!(patch["additionalProperties"], json!(false));
    let threshold = &patch["properties"]["pose"]["properties"]["confidence_threshold"];
    assert_eq!(threshold["type"], json!("number"));
    assert_eq!(threshold["nullable"], json!(true));
}

#[test]
fn requests_over_the_rate_limit_wait_their_turn_or_get_429_and_the_limit_is_live() {
    let server = Server::start_with(
        |t| t.replace("max_request_rate = 2000", "max_request_rate = 1"),
        &[],
    );
    let get_status = "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let at_once = |count: usize| -> Vec<(u16, String, Vec<u8>)> {
        std::thread::scope(|scope| {
            let answers: Vec<_> = (0..count)
                .map(|_| scope.spawn(|| raw(&server, get_status)))
                .collect();
            answers.into_iter().map(|a| a.join().unwrap()).collect()
        })
    };
    // At 1 a second, a burst of 64 is served at once and one more waits its second; far
    // more than that at once and the queue would hold them over a second: those get 429.
    let answers = at_once(100);
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    assert!(
        answers
            .iter()
            .all(|(status, ..)| *status == 200 || *status == 429),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(!refused.is_empty(), "100 requests at once, none refused");
    let (_, head, body) = refused[0];
    assert_eq!(header(head, "retry-after"), Some("1"), "{head}");
    assert!(json_error(body).contains("max_request_rate"), "{head}");

    // Raised live (the write itself waits its turn like any request).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.put("/api/v1/config/server/max_request_rate", "0");
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "{body}");
        assert!(Instant::now() < deadline, "the write never got its turn");
        std::thread::sleep(Duration::from_millis(200));
    }
    let answers = at_once(200);
    assert!(
        answers.iter().all(|(status, ..)| *status == 200),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(server.file().contains("max_request_rate = 0"));
}
