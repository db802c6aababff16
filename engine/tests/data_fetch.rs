//! Downloading against a local HTTP server on 127.0.0.1 (never the internet) that serves small
//! files of the real formats made up by the test, checked against their own checksums: success,
//! resume by skipping verified files, mirror fallback, corrupt content and missing files; for
//! CIFAR-10 the tarball's checks and unpacking.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use asgd_engine::data::fetch::{mirrors, sha256_hex, CIFAR10_MIRRORS};
use asgd_engine::data::idx::IDX_FILES;
use asgd_engine::data::{fetch, fetch_pinned, load, pins, DataKind, FetchEvent, Pin, Why};
use asgd_engine::EngineError;
use support::{files, files_in, fresh_dir, gzip};

/// A server on 127.0.0.1 answering each GET with `content(url_path)`, or 404 when that is None.
/// Returns its base URL and a count of requests served.
fn serve(content: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = match content(request.url()) {
                Some(bytes) => request.respond(tiny_http::Response::from_data(bytes)),
                None => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    (format!("http://127.0.0.1:{port}"), hits)
}

/// The gzipped files of a small MNIST-style set (60 train, 20 test) by name, and the pins of
/// their decompressed content.
fn small_mnist() -> (Vec<(String, Vec<u8>)>, Vec<Pin>) {
    let raw = files::mnist_like(60, 20);
    let served = raw.iter().map(|(stem, bytes)| (format!("{stem}.gz"), gzip(bytes))).collect();
    let pins =
        raw.iter().map(|(stem, bytes)| Pin { file: format!("{stem}.gz"), sha256: sha256_hex(bytes), size: None });
    (served, pins.collect())
}

/// Serves `files` by name under `prefix` (e.g. `/mnist/`).
fn serve_files(prefix: &'static str, files: Vec<(String, Vec<u8>)>) -> (String, Arc<AtomicUsize>) {
    serve(move |url| {
        let name = url.strip_prefix(prefix)?;
        files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone())
    })
}

#[derive(Default, Debug)]
struct Seen {
    started: usize,
    done: Vec<PathBuf>,
    present: usize,
    failed: Vec<String>,
    last_progress: Option<(u64, Option<u64>)>,
}

fn record(seen: &mut Seen) -> impl FnMut(FetchEvent) + '_ {
    move |event| match event {
        FetchEvent::Started { .. } => seen.started += 1,
        FetchEvent::Progress { done, total, .. } => seen.last_progress = Some((done, total)),
        FetchEvent::Done { path, .. } => seen.done.push(path.to_path_buf()),
        FetchEvent::AlreadyPresent { .. } => seen.present += 1,
        FetchEvent::MirrorFailed { url, reason, .. } => seen.failed.push(format!("{url} {reason}")),
        FetchEvent::Unpacked { files, .. } => seen.done.extend(files.iter().cloned()),
    }
}

#[test]
fn fetches_verifies_and_skips_what_is_present() {
    let (served, pins) = small_mnist();
    let labels_gz = served[3].1.len() as u64;
    let (base, hits) = serve_files("/mnist/", served);
    let dir = fresh_dir("data_fetch", "ok");
    // A stale, corrupt copy of one file is replaced, not trusted.
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), b"garbage").unwrap();
    let mut seen = Seen::default();
    fetch_pinned(DataKind::Mnist, &dir, Some(&format!("{base}/mnist")), &pins, &mut record(&mut seen)).unwrap();
    assert_eq!((seen.started, seen.done.len(), seen.present), (4, 4, 0), "{seen:?}");
    assert_eq!(seen.last_progress, Some((labels_gz, Some(labels_gz))), "the last file is the test labels");
    let mut expected: Vec<String> = IDX_FILES.iter().map(|f| format!("{f}.gz")).collect();
    expected.sort();
    assert_eq!(files_in(&dir), expected, "no .part file is left");
    let s = load(DataKind::Mnist, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len(), s.train.labels[0], s.test.labels[0]), (60, 20, 0, 1));

    // Second run: everything verified in place, nothing requested.
    let before = hits.load(Ordering::SeqCst);
    let mut again = Seen::default();
    fetch_pinned(DataKind::Mnist, &dir, Some(&format!("{base}/mnist/")), &pins, &mut record(&mut again)).unwrap();
    assert_eq!((again.present, again.started), (4, 0));
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

#[test]
fn a_failing_mirror_falls_back_to_the_next() {
    let (served, pins) = small_mnist();
    let (base, _) = serve_files("/good/", served);
    let dir = fresh_dir("data_fetch", "fallback");
    let list = format!("{base}/broken/, {base}/good/");
    let mut seen = Seen::default();
    fetch_pinned(DataKind::Mnist, &dir, Some(&list), &pins, &mut record(&mut seen)).unwrap();
    assert_eq!(seen.done.len(), 4);
    assert_eq!(seen.failed.len(), 4, "{:?}", seen.failed);
    assert!(
        seen.failed[0].contains("/broken/train-images-idx3-ubyte.gz the server answered HTTP 404"),
        "{:?}",
        seen.failed
    );
}

#[test]
fn corrupt_content_is_a_checksum_error_and_leaves_nothing() {
    // Valid gzip, wrong content: only the checksum can tell.
    let fake = gzip(&[0u8; 1000]);
    let (base, _) = serve(move |_| Some(fake.clone()));
    let dir = fresh_dir("data_fetch", "corrupt");
    let err = fetch(DataKind::FashionMnist, &dir, Some(&base), &mut |_| {}).unwrap_err().to_string();
    assert!(err.starts_with("could not download train-images-idx3-ubyte.gz into"), "{err}");
    assert!(err.contains(&format!("{base}/train-images-idx3-ubyte.gz: checksum mismatch")), "{err}");
    assert!(err.contains("expected c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"), "{err}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
}

#[test]
fn a_missing_file_names_the_url() {
    let (base, _) = serve(|_| None);
    let dir = fresh_dir("data_fetch", "missing");
    let Err(EngineError::DataUnavailable(e)) = fetch(DataKind::Mnist, &dir, Some(&base), &mut |_| {}) else {
        panic!("expected the download to fail")
    };
    let url = format!("{base}/train-images-idx3-ubyte.gz");
    let failures = vec![format!("{url}: the server answered HTTP 404")];
    assert_eq!((e.kind, &e.dir), (DataKind::Mnist, &dir));
    assert_eq!(e.why, Why::DownloadFailed { file: "train-images-idx3-ubyte.gz".into(), failures });
    let err = e.to_string();
    assert!(err.contains("or download from a mirror that serves the mnist .gz files (the `mirror` argument"), "{err}");
    assert!(files_in(&dir).is_empty());

    // An empty list of mirrors is refused before anything is requested.
    let Err(EngineError::DataUnavailable(e)) = fetch(DataKind::Mnist, &dir, Some(" , "), &mut |_| {}) else {
        panic!("expected no mirror to try")
    };
    assert_eq!(e.why, Why::NoMirror);
    assert_eq!(e.to_string(), "the mirror list is empty; give the URL of a folder that serves the mnist .gz files");
}

#[test]
fn nothing_listening_is_a_clear_error() {
    // Bind then drop a listener: the port is very likely closed afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = fresh_dir("data_fetch", "refused");
    let err =
        fetch(DataKind::Mnist, &dir, Some(&format!("http://127.0.0.1:{port}/")), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("the request failed"), "{err}");
}

#[test]
fn digits_needs_no_download() {
    let dir = fresh_dir("data_fetch", "digits");
    fetch(DataKind::Digits, &dir, Some("http://127.0.0.1:9/"), &mut |_| panic!("no event expected")).unwrap();
}

#[test]
fn mirror_lists_get_a_trailing_slash() {
    assert_eq!(mirrors(DataKind::Mnist, Some("http://a/x, http://b/y/")), ["http://a/x/", "http://b/y/"]);
}

#[test]
fn the_built_in_pins_are_the_canonical_files() {
    let mnist = pins(DataKind::Mnist);
    assert_eq!(mnist.len(), 4);
    assert_eq!(mnist[0].file, "train-images-idx3-ubyte.gz");
    assert_eq!(mnist[0].sha256, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db");
    let cifar = pins(DataKind::Cifar10);
    assert_eq!(
        cifar,
        [Pin {
            file: "cifar-10-binary.tar.gz".into(),
            sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd".into(),
            size: Some(170_052_171),
        }]
    );
    assert!(pins(DataKind::Digits).is_empty());
    assert_eq!(CIFAR10_MIRRORS, ["https://www.cs.toronto.edu/~kriz/"]);
    let dir = fresh_dir("data_fetch", "pin-count");
    let err = fetch_pinned(DataKind::Cifar10, &dir, Some("http://127.0.0.1:9/"), &[], &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("cifar10 takes 1 pin, one per file of `pins`, not 0"), "{err}");
}

/// The pin of `tarball` as served.
fn pin_of(tarball: &[u8]) -> Vec<Pin> {
    vec![Pin { file: "cifar-10-binary.tar.gz".into(), sha256: sha256_hex(tarball), size: Some(tarball.len() as u64) }]
}

const CIFAR_FILES: [&str; 8] = [
    "batches.meta.txt",
    "cifar-10-binary.tar.gz.sha256",
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

#[test]
fn cifar10_is_verified_unpacked_and_then_skipped() {
    let tarball = files::cifar_tarball(3);
    let pins = pin_of(&tarball);
    let (base, hits) = serve_files("/kriz/", vec![("cifar-10-binary.tar.gz".into(), tarball.clone())]);
    let dir = fresh_dir("data_fetch", "cifar");
    let mut seen = Seen::default();
    fetch_pinned(DataKind::Cifar10, &dir, Some(&format!("{base}/kriz")), &pins, &mut record(&mut seen)).unwrap();
    assert_eq!((seen.started, seen.done.len(), seen.present), (1, 7, 0), "{seen:?}");
    assert_eq!(seen.last_progress, Some((tarball.len() as u64, Some(tarball.len() as u64))));
    assert_eq!(files_in(&dir), CIFAR_FILES, "the six files and the class names, no tarball, no temporary file");
    assert_eq!(std::fs::read(dir.join("data_batch_2.bin")).unwrap(), files::cifar_file(3, 3));
    assert_eq!(std::fs::read_to_string(dir.join("batches.meta.txt")).unwrap(), files::CIFAR_META);
    let s = load(DataKind::Cifar10, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len(), s.train.shape), (15, 3, [3, 32, 32]));

    // Second run: already there, nothing requested.
    let before = hits.load(Ordering::SeqCst);
    let mut again = Seen::default();
    fetch_pinned(DataKind::Cifar10, &dir, Some(&base), &pins, &mut record(&mut again)).unwrap();
    assert_eq!((again.present, again.started), (1, 0));
    assert_eq!(hits.load(Ordering::SeqCst), before);
    // A damaged data file is noticed and the archive fetched again.
    std::fs::write(dir.join("data_batch_5.bin"), b"short").unwrap();
    fetch_pinned(DataKind::Cifar10, &dir, Some(&format!("{base}/kriz/")), &pins, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(dir.join("data_batch_5.bin")).unwrap(), files::cifar_file(12, 3));
}

#[test]
fn a_cifar10_tarball_with_the_wrong_checksum_is_refused_and_leaves_nothing() {
    let tarball = files::cifar_tarball(2);
    let mut pins = pin_of(&tarball);
    pins[0].sha256 = "0".repeat(64);
    let (base, _) = serve_files("/", vec![("cifar-10-binary.tar.gz".into(), tarball.clone())]);
    let dir = fresh_dir("data_fetch", "cifar-checksum");
    let err = fetch_pinned(DataKind::Cifar10, &dir, Some(&base), &pins, &mut |_| {}).unwrap_err().to_string();
    assert!(err.starts_with("could not download cifar-10-binary.tar.gz into"), "{err}");
    assert!(
        err.contains(&format!(
            "checksum mismatch: the file has sha256 {}, expected {}",
            sha256_hex(&tarball),
            "0".repeat(64)
        )),
        "{err}"
    );
    assert!(err.contains("or download from a mirror that serves cifar-10-binary.tar.gz"), "{err}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // The built-in pin: the small archive is refused by its size before its checksum.
    let err = fetch(DataKind::Cifar10, &dir, Some(&base), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains(&format!("size mismatch: the file is {} bytes, expected 170052171", tarball.len())), "{err}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
}

#[test]
fn a_cifar10_tarball_missing_a_file_or_with_a_bad_one_leaves_nothing() {
    let dir = fresh_dir("data_fetch", "cifar-incomplete");
    let mut entries: Vec<(String, Vec<u8>)> =
        files::cifar_files(2).into_iter().map(|(n, b)| (format!("cifar-10-batches-bin/{n}"), b)).collect();
    let last = entries.pop().unwrap();
    let tarball = files::tar_gz(&entries);
    let (base, _) = serve_files("/", vec![("cifar-10-binary.tar.gz".into(), tarball.clone())]);
    let err =
        fetch_pinned(DataKind::Cifar10, &dir, Some(&base), &pin_of(&tarball), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("the archive holds no test_batch.bin, so it is not the expected one"), "{err}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // All there, but one file cut short.
    entries.push((last.0, last.1[..100].to_vec()));
    let tarball = files::tar_gz(&entries);
    let (base, _) = serve_files("/", vec![("cifar-10-binary.tar.gz".into(), tarball.clone())]);
    let err =
        fetch_pinned(DataKind::Cifar10, &dir, Some(&base), &pin_of(&tarball), &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("test_batch.bin in the archive is 100 bytes, not a whole number of 3073-byte records"),
        "{err}"
    );
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // Not a tarball at all, though the pin matches.
    let junk = gzip(b"not a tar archive, only gzip");
    let (base, _) = serve_files("/", vec![("cifar-10-binary.tar.gz".into(), junk.clone())]);
    let err = fetch_pinned(DataKind::Cifar10, &dir, Some(&base), &pin_of(&junk), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("cifar-10-binary.tar.gz: the archive is corrupt or cut short ("), "{err}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
}

#[test]
fn a_flat_cifar10_tarball_and_a_member_in_another_folder() {
    // Members at the archive's top level are taken; one in another folder is not.
    let mut entries: Vec<(String, Vec<u8>)> = files::cifar_files(1);
    entries.insert(0, ("elsewhere/data_batch_1.bin".into(), b"not this one".to_vec()));
    let tarball = files::tar_gz(&entries);
    let (base, _) = serve_files("/", vec![("cifar-10-binary.tar.gz".into(), tarball.clone())]);
    let dir = fresh_dir("data_fetch", "cifar-flat");
    fetch_pinned(DataKind::Cifar10, &dir, Some(&base), &pin_of(&tarball), &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(dir.join("data_batch_1.bin")).unwrap(), files::cifar_file(0, 1));
    assert!(!dir.join("elsewhere").exists());
    assert_eq!(load(DataKind::Cifar10, Some(&dir)).unwrap().train.len(), 5);
}
