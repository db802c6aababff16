//! `asgd data fetch` and `asgd data info` as a user runs them, against a local HTTP server on
//! 127.0.0.1 that serves the project's copy of MNIST.

mod common;

use std::path::PathBuf;

use common::{asgd, assert_clean_failure, text};

fn shared_mnist() -> PathBuf {
    common::shared_data("mnist")
}

fn fresh_dir(name: &str) -> PathBuf {
    common::fresh_dir("data_cli", name)
}

/// Serves the files of `shared_mnist()` by name on 127.0.0.1; anything else is a 404.
fn serve_mnist() -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let name = request.url().trim_start_matches('/').to_string();
            let _ = match std::fs::read(shared_mnist().join(name)) {
                Ok(bytes) => request.respond(tiny_http::Response::from_data(bytes)),
                Err(_) => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    format!("http://127.0.0.1:{port}/")
}

#[test]
fn fetch_then_info_reads_what_was_fetched() {
    let mirror = serve_mnist();
    let dir = fresh_dir("fetched");
    let dir_s = dir.to_str().unwrap();
    let out = asgd(&["data", "fetch", "mnist", "--dir", dir_s, "--mirror", &mirror]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("mnist is in {dir_s}")), "{stdout}");
    assert_eq!(stderr.matches(": verified, saved as").count(), 4, "{stderr}");

    let out = asgd(&["data", "info", "mnist", "--data-dir", dir_s]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("train    60000 samples") && stdout.contains("test     10000 samples"), "{stdout}");
    assert!(stdout.contains("shape    [1, 28, 28]"), "{stdout}");
    assert!(stdout.contains("5923   6742"), "class histogram: {stdout}");

    // Fetching again downloads nothing.
    let out = asgd(&["data", "fetch", "mnist", "--dir", dir_s, "--mirror", &mirror]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr).matches("already present and verified").count(), 4);
}

#[test]
fn info_on_an_empty_folder_fails_cleanly() {
    let dir = fresh_dir("empty");
    let stderr = assert_clean_failure(&asgd(&["data", "info", "mnist", "--data-dir", dir.to_str().unwrap()]));
    assert!(stderr.contains("train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) is missing"), "{stderr}");
    assert!(stderr.contains("asgd data fetch mnist --dir"), "{stderr}");
}

#[test]
fn info_on_a_truncated_file_fails_cleanly() {
    let dir = fresh_dir("truncated");
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(shared_mnist().join(name), dir.join(name)).unwrap();
    }
    let images = std::fs::read(shared_mnist().join("t10k-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), &images[..images.len() / 3]).unwrap();
    let stderr = assert_clean_failure(&asgd(&["data", "info", "mnist", "--data-dir", dir.to_str().unwrap()]));
    assert!(stderr.contains("t10k-images-idx3-ubyte.gz: the gzip stream is corrupt or cut short"), "{stderr}");
}

#[test]
fn fetch_from_a_mirror_without_the_files_fails_cleanly() {
    let mirror = serve_mnist();
    let dir = fresh_dir("fetch404");
    let out = asgd(&[
        "data",
        "fetch",
        "fashion-mnist",
        "--dir",
        dir.to_str().unwrap(),
        "--mirror",
        &format!("{mirror}nothing-here/"),
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: could not download train-images-idx3-ubyte.gz"), "{stderr}");
    assert!(last.contains("nothing-here/train-images-idx3-ubyte.gz: the server answered HTTP 404"), "{stderr}");
}

#[test]
fn unknown_dataset_is_refused() {
    let out = asgd(&["data", "info", "cifar10"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("choose one of digits, mnist, fashion-mnist"), "{stderr}");
}

#[test]
fn digits_info_needs_no_files() {
    let out = asgd(&["data", "info", "digits"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("train    1437 samples") && stdout.contains("shape    [1, 8, 8]"), "{stdout}");
}
