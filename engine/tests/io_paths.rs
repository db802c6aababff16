//! Where files are written: a symbolic link is written through (the link stays), a path that
//! is not a regular file is refused and left as it was, and temporary files left by a writer
//! killed mid-write are removed, but never those of a writer that may still be running.
#![cfg(unix)]

mod support;

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use asgd_engine::io::atomic::{remove_stale_temps, resolve_target};
use asgd_engine::io::{write_atomic, MetricsWriter};
use support::{files_in, fresh_dir};

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// An empty file at `dir/name`, last modified `age` ago.
fn touch(dir: &Path, name: &str, age: Duration) {
    let f = File::create(dir.join(name)).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn a_symlink_is_written_through_and_stays_a_link() {
    let dir = fresh_dir("io_paths", "symlink");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::fs::write(dir.join("real/ck.bin"), b"old").unwrap();
    std::os::unix::fs::symlink("real/ck.bin", dir.join("link.bin")).unwrap();
    write_atomic(&dir.join("link.bin"), b"new").unwrap();
    assert!(std::fs::symlink_metadata(dir.join("link.bin")).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(dir.join("real/ck.bin")).unwrap(), b"new");
    assert_eq!(files_in(&dir.join("real")), ["ck.bin"], "the temporary file was next to the target");
    // A dangling link names the file to create.
    std::os::unix::fs::symlink("real/fresh.bin", dir.join("dangling.bin")).unwrap();
    write_atomic(&dir.join("dangling.bin"), b"made").unwrap();
    assert_eq!(std::fs::read(dir.join("real/fresh.bin")).unwrap(), b"made");
    // A loop is an error, not a hang.
    std::os::unix::fs::symlink("b.bin", dir.join("a.bin")).unwrap();
    std::os::unix::fs::symlink("a.bin", dir.join("b.bin")).unwrap();
    let err = write_atomic(&dir.join("a.bin"), b"x").unwrap_err().to_string();
    assert!(err.contains("loop"), "{err}");
}

#[test]
fn a_fifo_a_folder_or_a_device_is_refused_and_left_alone() {
    let dir = fresh_dir("io_paths", "special");
    let fifo = dir.join("pipe.safetensors");
    mkfifo(&fifo);
    let err = write_atomic(&fifo, b"x").unwrap_err().to_string();
    assert!(err.contains("it is a named pipe (FIFO), not a regular file"), "{err}");
    // Opening a FIFO for writing would block until a reader came: refused before that.
    let err = MetricsWriter::create(&fifo).unwrap_err().to_string();
    assert!(err.starts_with("cannot write metrics to"), "{err}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let err = write_atomic(&dir, b"x").unwrap_err().to_string();
    assert!(err.contains("it is a folder"), "{err}");
    let err = resolve_target(Path::new("/dev/null"), "a checkpoint").unwrap_err().to_string();
    assert_eq!(
        err,
        "cannot write a checkpoint to /dev/null: it is a device, not a regular file; pass the path of a file"
    );
    std::os::unix::fs::symlink("pipe.safetensors", dir.join("to-pipe")).unwrap();
    let err = write_atomic(&dir.join("to-pipe"), b"x").unwrap_err().to_string();
    assert!(err.contains("(through links,") && err.contains("FIFO"), "{err}");
    assert_eq!(files_in(&dir), ["pipe.safetensors", "to-pipe"]);
}

#[test]
fn temporary_files_of_dead_writers_are_removed_and_live_ones_kept() {
    let dir = fresh_dir("io_paths", "stale");
    let old = Duration::from_secs(600);
    // PIDs above Linux's largest (2^22) never run.
    touch(&dir, ".ck.safetensors.tmp-99999999-0", old);
    touch(&dir, ".ck.safetensors.tmp-99999998-17", old);
    // Just written by a process not seen: perhaps a live writer elsewhere; kept.
    touch(&dir, ".ck.safetensors.tmp-99999997-0", Duration::ZERO);
    // This process's own and a running process's (the parent shell, or init) are kept.
    let own = format!(".ck.safetensors.tmp-{}-3", std::process::id());
    touch(&dir, &own, old);
    touch(&dir, ".ck.safetensors.tmp-1-0", old);
    // Not our pattern, or another file's: kept.
    for name in [".ck.safetensors.tmp-99999999-x", ".other.safetensors.tmp-99999999-0", "ck.safetensors.tmp-99999999-0"]
    {
        touch(&dir, name, old);
    }
    remove_stale_temps(&dir.join("ck.safetensors"));
    let mut kept = vec![
        ".ck.safetensors.tmp-1-0".to_string(),
        ".ck.safetensors.tmp-99999997-0".into(),
        ".ck.safetensors.tmp-99999999-x".into(),
        own,
        ".other.safetensors.tmp-99999999-0".into(),
        "ck.safetensors.tmp-99999999-0".into(),
    ];
    kept.sort();
    assert_eq!(files_in(&dir), kept);

    // A write cleans up the same way.
    touch(&dir, ".ck.safetensors.tmp-99999999-1", old);
    write_atomic(&dir.join("ck.safetensors"), b"data").unwrap();
    kept.push("ck.safetensors".into());
    kept.sort();
    assert_eq!(files_in(&dir), kept);
}
