//! Why a dataset cannot be had, as data: which dataset, which folder, what is wrong. The
//! message says how to fix it with the library ([`super::fetch`], another folder); a
//! program on top words the fix in its own terms (the CLI names its flags and commands) from
//! [`DataUnavailable::problem`] and the fields.

use std::fmt;
use std::path::PathBuf;

use super::DataKind;

/// A dataset that could not be loaded or downloaded; see [`crate::EngineError::DataUnavailable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataUnavailable {
    /// The dataset.
    pub kind: DataKind,
    /// The folder its files belong in: the one the caller gave, or [`super::default_dir`].
    pub dir: PathBuf,
    /// True when `dir` is [`super::default_dir`] (the caller gave no folder).
    pub default_dir: bool,
    /// What is wrong.
    pub why: Why,
}

/// What is wrong with a dataset's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The folder does not exist.
    NoFolder,
    /// `file` is not in `folder` (`dir`, or the subfolder of it that holds the dataset).
    NoFile { folder: PathBuf, file: String },
    /// The file at `path` is there but not the dataset's; `problem` says how.
    Corrupt { path: PathBuf, problem: String },
    /// No mirror delivered `file`; each failure reads `URL: reason`.
    DownloadFailed { file: String, failures: Vec<String> },
    /// The list of mirrors to download from is empty.
    NoMirror,
}

impl DataUnavailable {
    /// What is wrong, without the fix: `DIR: the mnist folder does not exist`.
    pub fn problem(&self) -> String {
        let kind = self.kind.name();
        match &self.why {
            Why::NoFolder => format!("{}: the {kind} folder does not exist", self.dir.display()),
            Why::NoFile { folder, .. } if self.kind == DataKind::Digits => format!(
                "{}: found neither digits.csv.gz nor digits.csv there (nor in its digits/ subfolder)",
                folder.display()
            ),
            Why::NoFile { folder, file } => match file.strip_suffix(".gz") {
                Some(raw) => format!("{}: the {kind} file {file} (or {raw}) is missing", folder.display()),
                None => format!("{}: the {kind} file {file} is missing", folder.display()),
            },
            Why::Corrupt { path, problem } => format!("{}: {problem}", path.display()),
            Why::DownloadFailed { file, failures } => {
                format!("could not download {file} into {}: {}", self.dir.display(), failures.join("; "))
            }
            Why::NoMirror => "the mirror list is empty".to_string(),
        }
    }

    /// What a mirror must serve for this dataset: `the mnist .gz files`, `cifar-10-binary.tar.gz`.
    pub fn mirror_content(&self) -> String {
        match self.kind {
            DataKind::Cifar10 => super::fetch::CIFAR10_TARBALL.to_string(),
            kind => format!("the {} .gz files", kind.name()),
        }
    }

    /// How to fix it with the library.
    fn fix(&self) -> String {
        let kind = self.kind.name();
        match &self.why {
            Why::NoFolder | Why::NoFile { .. } if self.kind == DataKind::Digits => {
                "load digits from a folder that holds one, or from no folder for the embedded copy".to_string()
            }
            Why::NoFolder | Why::NoFile { .. } if self.default_dir => {
                format!("download the files there with `data::fetch`, or load {kind} from a folder that holds them")
            }
            Why::NoFolder | Why::NoFile { .. } => format!(
                "download the files into {} with `data::fetch`, or load {kind} from a folder that holds them",
                self.dir.display()
            ),
            Why::Corrupt { .. } => "download it again with `data::fetch`".to_string(),
            Why::DownloadFailed { .. } => format!(
                "check the network connection, or download from a mirror that serves {} (the `mirror` \
                 argument or ${})",
                self.mirror_content(),
                super::fetch::MIRROR_ENV
            ),
            Why::NoMirror => format!("give the URL of a folder that serves {}", self.mirror_content()),
        }
    }
}

impl fmt::Display for DataUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.problem(), self.fix())
    }
}
