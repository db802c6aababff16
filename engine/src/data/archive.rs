//! Unpacking chosen files from a gzipped tarball (CIFAR-10's `cifar-10-binary.tar.gz`).
//!
//! Only regular files with the wanted names are written, each under its bare name in the target
//! folder (whatever folder the archive put it in, so no path in the archive can write outside
//! it). Every file is written to a temporary name and synced; only when all required files are
//! there and pass the check are they renamed into place, so a bad archive leaves nothing.

use std::fs::File;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};

use crate::io::atomic;

/// What to take from an archive.
pub struct Members<'a> {
    /// Files that must be in the archive.
    pub required: &'a [&'a str],
    /// Files taken when present.
    pub optional: &'a [&'a str],
    /// Folders a member may sit in (besides the archive's top level), e.g. `cifar-10-batches-bin`.
    pub folders: &'a [&'a str],
}

/// The member's file name when it sits at the top level or directly in one of `folders`.
fn member_name(path: &Path, folders: &[&str]) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [name] => Some(name.clone()),
        [folder, name] if folders.contains(&folder.as_str()) => Some(name.clone()),
        _ => None,
    }
}

/// Extracts `members` from the gzipped tarball `tarball` into `dir`; `check(name, path)` vets
/// each extracted file (at its temporary path) before anything is renamed into place. Returns
/// the final paths, in archive order. The reason for a failure is one sentence; on failure no
/// file is left behind.
pub fn extract(
    tarball: &Path,
    dir: &Path,
    members: &Members,
    check: &dyn Fn(&str, &Path) -> Result<(), String>,
) -> Result<Vec<PathBuf>, String> {
    let mut written: Vec<(String, PathBuf)> = Vec::new();
    let outcome = unpack(tarball, dir, members, &mut written).and_then(|()| {
        if let Some(missing) = members.required.iter().find(|n| !written.iter().any(|(w, _)| w == *n)) {
            return Err(format!("the archive holds no {missing}, so it is not the expected one"));
        }
        written.iter().try_for_each(|(name, tmp)| check(name, tmp))
    });
    if let Err(reason) = outcome {
        written.iter().for_each(|(_, tmp)| {
            let _ = std::fs::remove_file(tmp);
        });
        return Err(reason);
    }
    let mut done = Vec::new();
    for (i, (name, tmp)) in written.iter().enumerate() {
        let target = dir.join(name);
        if let Err(e) = atomic::commit(tmp, &target) {
            written[i..].iter().for_each(|(_, t)| {
                let _ = std::fs::remove_file(t);
            });
            return Err(format!("cannot move {name} into place ({e})"));
        }
        done.push(target);
    }
    Ok(done)
}

/// Writes each wanted member to a temporary file in `dir`, recording it in `written` as soon as
/// the file exists (so the caller can remove it on any failure).
fn unpack(tarball: &Path, dir: &Path, members: &Members, written: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let file = File::open(tarball).map_err(|e| format!("cannot open {} ({e})", tarball.display()))?;
    let gz = flate2::read::MultiGzDecoder::new(BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let broken = |e: std::io::Error| format!("the archive is corrupt or cut short ({e})");
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(broken)?.into_owned();
        let Some(name) = member_name(&path, members.folders) else { continue };
        let wanted = members.required.contains(&name.as_str()) || members.optional.contains(&name.as_str());
        if !wanted || written.iter().any(|(w, _)| *w == name) {
            continue;
        }
        let tmp = atomic::temp_path_for(&dir.join(&name));
        let mut out = File::create(&tmp).map_err(|e| format!("cannot create {} ({e})", tmp.display()))?;
        written.push((name.clone(), tmp.clone()));
        std::io::copy(&mut entry, &mut out).map_err(|e| {
            format!("extracting {name} failed ({e}); the archive is corrupt or cut short, or the disk is full")
        })?;
        out.sync_all().map_err(|e| format!("cannot sync {} ({e})", tmp.display()))?;
    }
    Ok(())
}
