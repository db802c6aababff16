//! Helpers shared by the data and io test binaries (`mod support;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod files;
#[allow(unused_imports)]
pub use files::{gzip, idx_bytes};

/// A fresh, empty folder `<tmp>/<group>/<name>` for one test.
pub fn fresh_dir(group: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(group).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names of the entries of `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}
