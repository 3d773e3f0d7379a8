//! The Debian package as an administrator meets it: `cargo deb` packs the binary this test
//! run built (the release package is the same recipe on a release build, docs/packaging.md),
//! then tests/package/run installs, runs, upgrades and purges it on this machine, and
//! tests/package/under-systemd runs it as a real service under systemd in a container.
//! Installing packages needs root; as another user these tests say so and do nothing.

mod common;

use common::is_root;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn the_package_installs_runs_upgrades_and_purges_then_runs_under_systemd() {
    if !is_root() {
        eprintln!("skipped: installing a .deb needs root (CI runs this as root)");
        return;
    }
    let stage = tempfile::tempdir().unwrap();
    let first = build_deb(stage.path(), "0.1.0-1");
    let newer = build_deb(stage.path(), "0.1.0-2");
    // One after the other: both install into this machine's package database (the
    // container's root is an overlay of this one).
    let installed = script("tests/package/run", &[&first, &newer]);
    assert_eq!(
        installed, 0,
        "tests/package/run failed; its output is above"
    );
    match script("tests/package/under-systemd", &[&first]) {
        0 => {}
        // Said on stderr above: this machine cannot run systemd in a container.
        77 => eprintln!("the service under systemd was not run"),
        code => panic!("tests/package/under-systemd failed ({code}); its output is above"),
    }
}

/// Packs the built binary: cargo-deb finds it where a release build puts it.
fn build_deb(stage: &Path, version: &str) -> PathBuf {
    let release = stage.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_visiond"), release.join("visiond")).unwrap();
    let out = stage.join(version);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("cargo")
        // --strip: the test build keeps its debug info; --fast: the models barely compress.
        .args([
            "deb",
            "--no-build",
            "--strip",
            "--fast",
            "--deb-version",
            version,
        ])
        .arg("--output")
        .arg(&out)
        .env("CARGO_TARGET_DIR", stage)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo deb runs (tools/setup installs cargo-deb)");
    assert!(status.success(), "cargo deb failed");
    let deb = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .expect("a .deb was written");
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("visiond_{version}_")), "{name}");
    deb
}

/// Runs a test script; its exit code (its output goes to the test's output).
fn script(path: &str, args: &[&Path]) -> i32 {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .code()
        .unwrap_or(-1)
}
