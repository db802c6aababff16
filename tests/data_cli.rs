//! `asgd data fetch` and `asgd data info` as a user runs them, against a local HTTP server on
//! 127.0.0.1 serving small files of the real formats that the tests make up (their checksums
//! are handed to the debug binary through `ASGD_TEST_FETCH_PINS`).

mod common;

use std::path::{Path, PathBuf};

use asgd::engine::data::fetch::sha256_hex;
use common::{asgd, asgd_with, assert_clean_failure, files, serve, text};

fn fresh_dir(name: &str) -> PathBuf {
    common::fresh_dir("data_cli", name)
}

/// A small MNIST-style set (60 train, 20 test) as the gzipped files a mirror serves, and the
/// pins of their decompressed content in `ASGD_TEST_FETCH_PINS` syntax.
fn small_mnist() -> (Vec<(String, Vec<u8>)>, String) {
    let raw = files::mnist_like(60, 20);
    let pins: Vec<String> = raw.iter().map(|(stem, bytes)| format!("{stem}.gz={}", sha256_hex(bytes))).collect();
    (raw.iter().map(|(stem, bytes)| (format!("{stem}.gz"), files::gzip(bytes))).collect(), pins.join(","))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn fetch_then_info_reads_what_was_fetched() {
    let (served, pins) = small_mnist();
    let mirror = serve(served);
    let dir = fresh_dir("fetched");
    let env = [("ASGD_TEST_FETCH_PINS", pins.as_str())];
    let out = asgd_with(&["data", "fetch", "mnist", "--dir", s(&dir), "--mirror", &mirror], &env);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("mnist is in {}", s(&dir))), "{stdout}");
    assert_eq!(stderr.matches(": verified, saved as").count(), 4, "{stderr}");

    let out = asgd(&["data", "info", "mnist", "--data-dir", s(&dir)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("train    60 samples") && stdout.contains("test     20 samples"), "{stdout}");
    assert!(stdout.contains("shape    [1, 28, 28]"), "{stdout}");
    assert!(stdout.contains("train          6      6      6"), "class histogram: {stdout}");

    // Fetching again downloads nothing.
    let out = asgd_with(&["data", "fetch", "mnist", "--dir", s(&dir), "--mirror", &mirror], &env);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr).matches("already present and verified").count(), 4);

    // Without the test's pins the built-in checksums apply, and the made-up files fail them.
    let other = fresh_dir("fetched-unpinned");
    let out = asgd(&["data", "fetch", "mnist", "--dir", s(&other), "--mirror", &mirror]);
    let stderr = text(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(!out.status.success() && last.starts_with("error: could not download"), "{stderr}");
    assert!(last.contains("checksum mismatch") && last.contains("expected ba891046e6505d7a"), "{stderr}");
}

#[test]
fn cifar10_is_fetched_through_the_mirror_variable_then_read() {
    let tarball = files::cifar_tarball(3);
    let pins = format!("cifar-10-binary.tar.gz={}:{}", sha256_hex(&tarball), tarball.len());
    let mirror = serve(vec![("cifar-10-binary.tar.gz".into(), tarball)]);
    let dir = fresh_dir("cifar");
    // No --mirror: ASGD_DATA_MIRROR names the server.
    let env = [("ASGD_TEST_FETCH_PINS", pins.as_str()), ("ASGD_DATA_MIRROR", mirror.as_str())];
    let out = asgd_with(&["data", "fetch", "cifar10", "--dir", s(&dir)], &env);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("cifar10 is in {}", s(&dir))), "{stdout}");
    assert!(
        stderr.contains("cifar-10-binary.tar.gz: verified, unpacked") && stderr.contains("test_batch.bin"),
        "{stderr}"
    );

    let out = asgd(&["data", "info", "cifar-10", "--data-dir", s(&dir)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("train    15 samples") && stdout.contains("test     3 samples"), "{stdout}");
    assert!(stdout.contains("shape    [3, 32, 32]"), "{stdout}");

    let out = asgd_with(&["data", "fetch", "cifar10", "--dir", s(&dir)], &env);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("cifar-10-binary.tar.gz: already present and verified"));
}

#[test]
fn a_cifar10_tarball_that_fails_the_checksum_leaves_nothing() {
    let tarball = files::cifar_tarball(1);
    let mirror = serve(vec![("cifar-10-binary.tar.gz".into(), tarball.clone())]);
    let dir = fresh_dir("cifar-bad");
    let pins = format!("cifar-10-binary.tar.gz={}:{}", "a".repeat(64), tarball.len());
    let out = asgd_with(
        &["data", "fetch", "cifar10", "--dir", s(&dir), "--mirror", &mirror],
        &[("ASGD_TEST_FETCH_PINS", &pins)],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: could not download cifar-10-binary.tar.gz"), "{stderr}");
    assert!(last.contains(&format!("checksum mismatch: the file has sha256 {}", sha256_hex(&tarball))), "{stderr}");
    assert!(last.ends_with("or pass --mirror URL of a folder that serves cifar-10-binary.tar.gz"), "{stderr}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left in {}", dir.display());
    // The built-in pin: the real archive's size.
    let out = asgd(&["data", "fetch", "cifar10", "--dir", s(&dir), "--mirror", &mirror]);
    assert!(text(&out.stderr).contains("expected 170052171"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn info_on_an_empty_folder_fails_cleanly() {
    let dir = fresh_dir("empty");
    let stderr = assert_clean_failure(&asgd(&["data", "info", "mnist", "--data-dir", s(&dir)]));
    assert!(stderr.contains("train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) is missing"), "{stderr}");
    let fix = format!("; run `asgd data fetch mnist --dir {}` or point --data-dir at the folder", s(&dir));
    assert!(stderr.contains(&fix), "{stderr}");
    let stderr = assert_clean_failure(&asgd(&["data", "info", "cifar10", "--data-dir", s(&dir)]));
    assert!(
        stderr.contains("the cifar10 file data_batch_1.bin is missing; run `asgd data fetch cifar10 --dir"),
        "{stderr}"
    );
    let stderr = assert_clean_failure(&asgd(&["data", "info", "digits", "--data-dir", s(&dir)]));
    assert!(stderr.trim_end().ends_with("or leave it out to use the copy built into asgd"), "{stderr}");
}

#[test]
fn info_without_a_folder_says_how_to_fill_the_default_one() {
    // The helpers point $ASGD_DATA_DIR at a folder that does not exist.
    let stderr = assert_clean_failure(&asgd(&["data", "info", "fashion-mnist"]));
    assert!(
        stderr.trim_end().ends_with(
            "the fashion-mnist folder does not exist; run `asgd data fetch fashion-mnist` to download the files \
             there, or pass --data-dir DIR"
        ),
        "{stderr}"
    );
}

#[test]
fn info_on_a_corrupt_cifar10_file_says_to_download_it_again() {
    let dir = fresh_dir("cifar-corrupt");
    files::write_cifar(&dir, 1);
    let mut bytes = files::cifar_file(0, 1);
    bytes[0] = 10;
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    let stderr = assert_clean_failure(&asgd(&["data", "info", "cifar10", "--data-dir", s(&dir)]));
    assert!(stderr.contains("test_batch.bin: label 10 in record 0 is outside 0..=9"), "{stderr}");
    assert!(
        stderr.trim_end().ends_with(&format!("; download it again (`asgd data fetch cifar10 --dir {}`)", s(&dir))),
        "{stderr}"
    );
}

#[test]
fn info_on_a_truncated_file_fails_cleanly() {
    let dir = fresh_dir("truncated");
    files::write_mnist_like(&dir, 10, 200);
    let path = dir.join("t10k-images-idx3-ubyte.gz");
    let images = std::fs::read(&path).unwrap();
    std::fs::write(&path, &images[..images.len() / 3]).unwrap();
    let stderr = assert_clean_failure(&asgd(&["data", "info", "mnist", "--data-dir", s(&dir)]));
    assert!(stderr.contains("t10k-images-idx3-ubyte.gz: the gzip stream is corrupt or cut short"), "{stderr}");
}

#[test]
fn fetch_from_a_mirror_without_the_files_fails_cleanly() {
    let mirror = serve(Vec::new());
    let dir = fresh_dir("fetch404");
    let out =
        asgd(&["data", "fetch", "fashion-mnist", "--dir", s(&dir), "--mirror", &format!("{mirror}nothing-here/")]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: could not download train-images-idx3-ubyte.gz"), "{stderr}");
    assert!(last.contains("nothing-here/train-images-idx3-ubyte.gz: the server answered HTTP 404"), "{stderr}");
    assert!(last.ends_with("or pass --mirror URL of a folder that serves the fashion-mnist .gz files"), "{stderr}");

    let stderr = assert_clean_failure(&asgd(&["data", "fetch", "mnist", "--dir", s(&dir), "--mirror", ""]));
    assert!(
        stderr
            .trim_end()
            .ends_with("the mirror list is empty; pass --mirror URL of a folder that serves the mnist .gz files"),
        "{stderr}"
    );
}

#[test]
fn unknown_dataset_is_refused() {
    let out = asgd(&["data", "info", "imagenet"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("choose one of digits, mnist, fashion-mnist, cifar10, or a FILE.safetensors"), "{stderr}");
}

#[test]
fn digits_info_needs_no_files() {
    let out = asgd(&["data", "info", "digits"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("train    1437 samples") && stdout.contains("shape    [1, 8, 8]"), "{stdout}");
}

#[test]
fn info_reads_a_safetensors_file_of_ones_own() {
    let dir = fresh_dir("own");
    let file = dir.join("mine.safetensors");
    files::write_dataset(&file, 20, [2, 4, 4], |i| (i % 4) as i64);
    let out = asgd(&["data", "info", s(&file), "--test-split", "0.2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("dataset  mine.safetensors"), "{stdout}");
    assert!(stdout.contains("train    16 samples") && stdout.contains("test     4 samples"), "{stdout}");
    assert!(stdout.contains("shape    [2, 4, 4]") && stdout.contains("classes  4"), "{stdout}");
    let line = assert_clean_failure(&asgd(&["data", "info", s(&file)]));
    assert!(line.contains("needs a test set; pass --test-data FILE.safetensors or --test-split F"), "{line}");
}
