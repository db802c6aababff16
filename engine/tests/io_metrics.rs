//! JSON Lines metrics: each write is a complete line on disk at once.

mod support;

use std::path::Path;

use asgd_engine::io::MetricsWriter;
use serde_json::{json, Value};
use support::fresh_dir;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn each_event_is_on_disk_once_written() {
    let path = fresh_dir("io_metrics", "write").join("run.jsonl");
    let mut w = MetricsWriter::create(&path).unwrap();
    w.write(&json!({"event": "step", "step": 1, "train_loss": 2.5})).unwrap();
    // Read while the writer is still open: nothing is held in a buffer.
    assert_eq!(lines(&path), [json!({"event": "step", "step": 1, "train_loss": 2.5})]);
    w.write(&json!({"event": "done", "test_acc": 0.9})).unwrap();
    assert_eq!(lines(&path).len(), 2);
    assert_eq!(w.path(), path);
}

#[test]
fn create_truncates_and_append_continues() {
    let path = fresh_dir("io_metrics", "append").join("run.jsonl");
    MetricsWriter::create(&path).unwrap().write(&json!({"event": "old"})).unwrap();
    MetricsWriter::create(&path).unwrap().write(&json!({"event": "first"})).unwrap();
    MetricsWriter::append(&path).unwrap().write(&json!({"event": "resumed"})).unwrap();
    assert_eq!(lines(&path), [json!({"event": "first"}), json!({"event": "resumed"})]);
    let fresh = path.with_file_name("new.jsonl");
    MetricsWriter::append(&fresh).unwrap().write(&json!({"event": "x"})).unwrap();
    assert_eq!(lines(&fresh).len(), 1);
}

#[test]
fn a_missing_folder_is_an_error_not_created() {
    let dir = fresh_dir("io_metrics", "missing");
    let path = dir.join("nope").join("run.jsonl");
    let msg = MetricsWriter::create(&path).unwrap_err().to_string();
    assert!(msg.contains("cannot write metrics to") && msg.contains("does not exist; create it first"), "{msg}");
    assert!(!dir.join("nope").exists());
}
