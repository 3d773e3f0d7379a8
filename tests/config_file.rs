//! The config file under a careless user, a hostile one and a loaded machine: editors' save
//! styles caught half way, files deleted, replaced by directories, FIFOs and devices, writes
//! killed with SIGKILL, secrets in values. The file is never lost, never half applied, and
//! nothing stalls on it.

mod common;

use common::{expect_event, save_by_rename, Server, SHIPPED_CONFIG};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);
/// Long enough for the watcher, the settle wait and a loaded machine.
const SETTLED: Duration = Duration::from_secs(10);

/// A GET that fails the test instead of hanging when the server stalls.
fn get_within(server: &Server, path: &str, limit: Duration) -> (u16, String) {
    let agent = ureq::AgentBuilder::new().timeout(limit).build();
    match agent.get(&server.url(path)).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("GET {path} got no answer within {limit:?}: {e}"),
    }
}

fn config_error(server: &Server) -> Value {
    server.get_json("/api/v1/status")["config"]["error"].clone()
}

/// Waits until the status's config error satisfies `check`.
fn wait_for_error(server: &Server, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLED;
    loop {
        let error = config_error(server);
        if check(&error) {
            return error;
        }
        assert!(Instant::now() < deadline, "config error stays {error}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn says(error: &Value, phrase: &str) -> bool {
    error.as_str().is_some_and(|e| e.contains(phrase))
}

#[test]
fn a_write_while_an_editor_has_renamed_the_file_away_is_refused_and_loses_nothing() {
    let server = Server::start();
    let original = server.file();
    let backup = server.config.with_extension("toml~");
    // vim's save: the file goes away first; the new one is written after.
    std::fs::rename(&server.config, &backup).unwrap();
    let (code, body) = server.put("/api/v1/config/pose/confidence_threshold", "0.3");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("missing"), "{body}");
    assert!(!server.config.exists(), "a refused write creates no file");
    let error = wait_for_error(&server, |e| says(e, "the file is missing"));
    assert!(
        says(&error, &server.config.display().to_string()),
        "{error}"
    );
    // The last good settings stay: not the defaults an empty file would give.
    let listen = format!("127.0.0.1:{}", server.port);
    assert_eq!(
        server.get_json("/api/v1/config/server/listen"),
        json!(listen)
    );
    std::fs::rename(&backup, &server.config).unwrap();
    wait_for_error(&server, Value::is_null);
    let (code, body) = server.put("/api/v1/config/pose/confidence_threshold", "0.3");
    assert_eq!(code, 200, "{body}");
    let now = server.file();
    assert_eq!(
        now.lines().count(),
        original.lines().count(),
        "every line and comment kept"
    );
    assert!(now.contains("confidence_threshold = 0.3"));
}

#[test]
fn a_file_written_in_place_is_applied_only_once_its_writer_closes_it() {
    let server = Server::start();
    let events = server.events();
    let text = server
        .file()
        .replace("title = \"visiond\"", "title = \"half\"");
    let middle = text.find("[input]").unwrap();
    let mut file = std::fs::File::create(&server.config).unwrap();
    file.write_all(&text.as_bytes()[..middle]).unwrap();
    file.flush().unwrap();
    // The editor pauses with only [server] written. The pause is the scenario under test,
    // not a wait for a condition: nothing of the half file may show meanwhile.
    let pause = Instant::now() + Duration::from_millis(600);
    while Instant::now() < pause {
        let config = server.get_json("/api/v1/config");
        assert_eq!(config["server"]["title"], json!("visiond"), "half applied");
        assert!(config_error(&server).is_null());
        std::thread::sleep(Duration::from_millis(20));
    }
    file.write_all(&text.as_bytes()[middle..]).unwrap();
    drop(file);
    server.wait_for("/api/v1/config/server/title", SETTLED, |v| v == "half");
    // Applied once, whole: the title changed and no other key moved on the way.
    let change = expect_event(&events, "change", SECOND, |_| true);
    assert_eq!(change["key"], json!("server.title"));
    assert!(events
        .try_iter()
        .all(|(name, data)| name != "change" || data["key"] == "server.title"));
}

#[test]
fn an_emptied_file_is_not_a_reset_to_defaults() {
    let server = Server::start_with(|t| t.replace("fps = 30 ", "fps = 12 "), &[]);
    std::fs::write(&server.config, "").unwrap();
    wait_for_error(&server, |e| says(e, "the file is empty"));
    assert_eq!(server.get_json("/api/v1/config/input/fps"), json!(12));
    let (code, _) = server.put("/api/v1/config/input/fps", "13");
    assert_eq!(code, 409);
    assert_eq!(server.file(), "", "the file is the user's to fill again");
    // A comment says "defaults, on purpose".
    std::fs::write(&server.config, "# all defaults\n").unwrap();
    server.wait_for("/api/v1/config/input/fps", SETTLED, |v| v == 30);
    assert!(config_error(&server).is_null());
}

#[test]
fn a_file_put_back_after_a_delete_or_a_directory_is_good_again() {
    let mut server = Server::start();
    let good = server.file();
    std::fs::remove_file(&server.config).unwrap();
    wait_for_error(&server, |e| says(e, "missing"));
    std::fs::write(&server.config, &good).unwrap();
    wait_for_error(&server, Value::is_null);
    assert_eq!(server.put("/api/v1/config/input/fps", "25").0, 200);

    let good = server.file();
    std::fs::remove_file(&server.config).unwrap();
    std::fs::create_dir(&server.config).unwrap();
    wait_for_error(&server, |e| says(e, "directory"));
    assert_eq!(server.put("/api/v1/config/input/fps", "26").0, 409);
    std::fs::remove_dir(&server.config).unwrap();
    std::fs::write(&server.config, &good).unwrap();
    wait_for_error(&server, Value::is_null);
    assert_eq!(server.put("/api/v1/config/input/fps", "26").0, 200);

    // SIGHUP clears it too, where no watcher event came (a restore the watcher missed).
    let good = server.file();
    std::fs::remove_file(&server.config).unwrap();
    wait_for_error(&server, |e| says(e, "missing"));
    std::fs::write(&server.config, &good).unwrap();
    server.signal("HUP");
    wait_for_error(&server, Value::is_null);
    // And a restart sweeps nothing it should keep.
    server.kill_and_restart();
    assert_eq!(server.get_json("/api/v1/config/input/fps"), json!(26));
}

#[test]
fn a_fifo_or_a_device_at_the_config_path_stalls_nothing() {
    let server = Server::start();
    let good = server.file();
    let fifo = server.dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::fs::rename(&fifo, &server.config).unwrap();
    wait_for_error(&server, |e| says(e, "not a regular file"));
    assert_eq!(get_within(&server, "/static/app.js", SECOND * 5).0, 200);
    let (code, _) = server.put("/api/v1/config/input/fps", "9");
    assert_eq!(code, 409);

    std::fs::remove_file(&server.config).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &server.config).unwrap();
    server.signal("HUP");
    let rss_before = rss_kib(server.child.id());
    wait_for_error(&server, |e| says(e, "not a regular file"));
    assert!(
        rss_kib(server.child.id()) < rss_before + 100 * 1024,
        "reading /dev/zero grew the process"
    );
    std::fs::remove_file(&server.config).unwrap();
    std::fs::write(&server.config, vec![b'#'; 2 * 1024 * 1024]).unwrap();
    wait_for_error(&server, |e| says(e, "over 1024 KiB"));
    std::fs::write(&server.config, &good).unwrap();
    wait_for_error(&server, Value::is_null);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_restart_removes_the_temp_files_of_writes_it_killed() {
    let mut server = Server::start();
    let name = server.config.file_name().unwrap().to_str().unwrap();
    // A pid that no process has: the leftover of a visiond that is gone.
    let leftover = server.dir.path().join(format!(".{name}.4294967294.tmp"));
    std::fs::write(&leftover, "[input]\nfps = 1\n").unwrap();
    let users_own = server.dir.path().join(format!(".{name}.swp"));
    std::fs::write(&users_own, "vim's").unwrap();
    server.kill_and_restart();
    assert!(!leftover.exists(), "the leftover temp file is removed");
    assert!(users_own.exists(), "other files are not ours to remove");
    assert!(server
        .log_text()
        .contains("left by a write that was interrupted"));
}

#[test]
fn kill_9_during_concurrent_writes_and_saves_never_loses_the_file() {
    let mut server = Server::start();
    let comments: Vec<String> = SHIPPED_CONFIG
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect();
    for round in 0..8u64 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = [("input", "fps"), ("webrtc", "max_viewers")]
            .into_iter()
            .flat_map(|key| [key, key])
            .enumerate()
            .map(|(n, (section, name))| {
                let url = server.url(&format!("/api/v1/config/{section}/{name}"));
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut i = n as u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        i += 1;
                        let _ = ureq::put(&url)
                            .timeout(SECOND * 2)
                            .send_string(&(10 + i % 20).to_string());
                    }
                })
            })
            .collect();
        let editor = {
            let path = server.config.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = round;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    edit_bitrate(&path, 10 + i % 20, i % 2 == 0);
                    // A person saves now and then, not in a busy loop.
                    std::thread::sleep(Duration::from_millis(150));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        let _ = server.child.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in writers {
            thread.join().unwrap();
        }
        editor.join().unwrap();
        let text = server.file();
        let check = Command::new(env!("CARGO_BIN_EXE_visiond"))
            .arg("check-config")
            .arg(&server.config)
            .output()
            .unwrap();
        assert!(check.status.success(), "round {round}: {text}");
        for comment in &comments {
            assert!(
                text.contains(comment.as_str()),
                "round {round} lost {comment}"
            );
        }
        let values: toml::Table = text.parse().unwrap();
        let shipped: toml::Table = SHIPPED_CONFIG.parse().unwrap();
        let held = |section: &str, name: &str, written: &[i64]| {
            let value = values[section][name].as_integer().unwrap();
            let start = shipped[section][name].as_integer().unwrap();
            assert!(
                value == start || written.contains(&value),
                "round {round}: {section}.{name} = {value}, a value it never held"
            );
        };
        let written: Vec<i64> = (10..30).collect();
        held("input", "fps", &written);
        held("webrtc", "max_viewers", &written);
        let bitrates: Vec<i64> = written.iter().map(|k| k * 100_000).collect();
        held("output", "bitrate", &bitrates);
        assert_eq!(
            values["server"]["listen"].as_str(),
            Some(format!("127.0.0.1:{}", server.port).as_str())
        );
        server.kill_and_restart();
        let leftovers: Vec<_> = std::fs::read_dir(server.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
    assert!(server.get_json("/api/v1/status")["config"]["error"].is_null());
}

/// Sets `[output] bitrate` (in kbit/s steps) the way an editor would: by rename or in place.
fn edit_bitrate(path: &Path, kbps: u64, by_rename: bool) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        return;
    };
    doc["output"]["bitrate"] = toml_edit::value((kbps * 100_000) as i64);
    if by_rename {
        save_by_rename(path, &doc.to_string());
    } else {
        let _ = std::fs::write(path, doc.to_string());
    }
}
