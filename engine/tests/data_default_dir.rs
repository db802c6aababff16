//! The default data folder follows the environment. One test in its own binary, because it
//! changes process-wide environment variables.

use std::path::{Path, PathBuf};

use asgd_engine::data::{default_dir, load, DataKind, DataUnavailable, Why};
use asgd_engine::EngineError;

/// The error of loading `kind` from its default folder.
fn unavailable(kind: DataKind) -> DataUnavailable {
    match load(kind, None) {
        Err(EngineError::DataUnavailable(d)) => d,
        other => panic!("expected the data to be unavailable, got {:?}", other.map(|s| s.train.len())),
    }
}

#[test]
fn default_dir_follows_the_environment_and_missing_files_say_how_to_fetch() {
    for var in ["ASGD_DATA_DIR", "XDG_CACHE_HOME", "HOME", "USERPROFILE"] {
        std::env::remove_var(var);
    }
    std::env::set_var("HOME", "/home/someone");
    assert_eq!(default_dir(DataKind::Mnist), Path::new("/home/someone/.cache/asgd/mnist"));
    std::env::set_var("XDG_CACHE_HOME", "/var/cache/me");
    assert_eq!(default_dir(DataKind::FashionMnist), Path::new("/var/cache/me/asgd/fashion-mnist"));

    let root: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("data_default_dir");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::env::set_var("ASGD_DATA_DIR", &root);
    assert_eq!(default_dir(DataKind::Mnist), root.join("mnist"));

    let hint = "download the files there with `data::fetch`, or load mnist from a folder that holds them";
    let e = unavailable(DataKind::Mnist);
    assert_eq!((e.kind, &e.dir, e.default_dir, &e.why), (DataKind::Mnist, &root.join("mnist"), true, &Why::NoFolder));
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}: the mnist folder does not exist; ", root.join("mnist").display())), "{msg}");
    assert!(msg.ends_with(hint), "{msg}");
    std::fs::create_dir(root.join("mnist")).unwrap();
    let e = unavailable(DataKind::Mnist);
    let file = "train-images-idx3-ubyte.gz".to_string();
    assert_eq!(e.why, Why::NoFile { folder: root.join("mnist"), file });
    let msg = e.to_string();
    assert!(msg.contains("train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) is missing; "), "{msg}");
    assert!(msg.ends_with(hint), "{msg}");

    // Digits never needs a folder.
    assert_eq!(load(DataKind::Digits, None).unwrap().test.len(), 360);
}
