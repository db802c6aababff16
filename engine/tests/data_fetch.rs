//! Downloading against a local HTTP server on 127.0.0.1 (never the internet): success, resume
//! by skipping verified files, mirror fallback, corrupt content and missing files.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use asgd_engine::data::fetch::mirrors;
use asgd_engine::data::idx::IDX_FILES;
use asgd_engine::data::{fetch, load, DataKind, FetchEvent};
use support::{files_in, fresh_dir, gzip, shared_data};

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

/// Serves the real MNIST files under `prefix` (e.g. `/mnist/`).
fn serve_mnist(prefix: &'static str) -> (String, Arc<AtomicUsize>) {
    serve(move |url| {
        url.strip_prefix(prefix).and_then(|name| std::fs::read(shared_data().join("mnist").join(name)).ok())
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
    }
}

#[test]
fn fetches_verifies_and_skips_what_is_present() {
    let (base, hits) = serve_mnist("/mnist/");
    let dir = fresh_dir("data_fetch", "ok");
    // A stale, corrupt copy of one file is replaced, not trusted.
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), b"garbage").unwrap();
    let mut seen = Seen::default();
    fetch(DataKind::Mnist, &dir, Some(&format!("{base}/mnist")), &mut record(&mut seen)).unwrap();
    assert_eq!((seen.started, seen.done.len(), seen.present), (4, 4, 0), "{seen:?}");
    assert_eq!(seen.last_progress, Some((4540, Some(4540))), "the last file is the 4,540-byte test labels");
    let mut expected: Vec<String> = IDX_FILES.iter().map(|f| format!("{f}.gz")).collect();
    expected.sort();
    assert_eq!(files_in(&dir), expected, "no .part file is left");
    let s = load(DataKind::Mnist, Some(&dir)).unwrap();
    assert_eq!((s.train.len(), s.test.len(), s.train.labels[0], s.test.labels[0]), (60_000, 10_000, 5, 7));

    // Second run: everything verified in place, nothing requested.
    let before = hits.load(Ordering::SeqCst);
    let mut again = Seen::default();
    fetch(DataKind::Mnist, &dir, Some(&format!("{base}/mnist/")), &mut record(&mut again)).unwrap();
    assert_eq!((again.present, again.started), (4, 0));
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

#[test]
fn a_failing_mirror_falls_back_to_the_next() {
    let (base, _) = serve_mnist("/good/");
    let dir = fresh_dir("data_fetch", "fallback");
    let list = format!("{base}/broken/, {base}/good/");
    let mut seen = Seen::default();
    fetch(DataKind::Mnist, &dir, Some(&list), &mut record(&mut seen)).unwrap();
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
    let err = fetch(DataKind::Mnist, &dir, Some(&base), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains(&format!("{base}/train-images-idx3-ubyte.gz: the server answered HTTP 404")), "{err}");
    assert!(err.contains("pass --mirror URL"), "{err}");
    assert!(files_in(&dir).is_empty());
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
