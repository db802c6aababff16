//! Helpers shared by the integration tests that run the `asgd` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Small data files of the real formats, made up (the engine's tests use the same file).
#[path = "../../engine/tests/support/files.rs"]
pub mod files;

/// An empty folder for one test, under cargo's temporary directory.
pub fn fresh_dir(group: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(group).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `asgd` with `args`, never letting it reach the public mirrors or a user's cache.
pub fn asgd(args: &[&str]) -> Output {
    asgd_with(args, &[])
}

/// As [`asgd`], with the environment variables `env` set too (or overriding its own).
pub fn asgd_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asgd"))
        .args(args)
        .env("ASGD_DATA_MIRROR", "http://127.0.0.1:9/")
        .env("ASGD_DATA_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-default-data"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Serves `files` (name, content) by name on 127.0.0.1, anything else is a 404; returns the
/// base URL, ending in `/`.
pub fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let name = request.url().trim_start_matches('/').to_string();
            let _ = match files.iter().find(|(n, _)| *n == name) {
                Some((_, bytes)) => request.respond(tiny_http::Response::from_data(bytes.clone())),
                None => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    format!("http://127.0.0.1:{port}/")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A successful command's stdout; panics with its stderr otherwise.
pub fn assert_success(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A failed command: non-zero exit, one `error:` line on stderr, no panic. Returns the line.
pub fn assert_clean_failure(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}
