//! The library's errors in the CLI's words: the one line `asgd` prints for a failure, with
//! the flag or command to use where the library names only the setting or function.

use asgd::data::{DataKind, DataUnavailable, Why};
use asgd::{EngineError, TrainError};

/// The line after `error: ` for `err`: its whole chain of causes, and for the library's
/// typed errors the flag or command that fixes it.
pub fn message(err: &anyhow::Error) -> String {
    if let Some(e) = err.downcast_ref::<TrainError>() {
        if let Some(line) = train_error(e) {
            return line;
        }
    }
    chain(err)
}

/// `err` and its causes joined by `: `, each worded for the CLI, leaving out a cause whose
/// text the message already holds: many errors put their source in their own sentence ("could
/// not listen on ...: Permission denied (os error 13); ...") and also report it as their
/// source, and the OS's words should appear once.
fn chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.downcast_ref::<EngineError>().and_then(engine_error).unwrap_or_else(|| cause.to_string());
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// What to lower for a tensor the device cannot hold: the batch when it grows with the
/// batch, the model otherwise.
fn too_large(batch: Option<usize>) -> &'static str {
    match batch {
        Some(_) => "use a smaller --batch",
        None => "use smaller --hidden sizes or a smaller --model",
    }
}

const DIVERGED: &str = "lower the learning rate (--lr) or the momentum (--momentum)";

/// The CLI's sentence for a [`TrainError`] that names a setting; `None` for those that say
/// all there is already (communication, device, data).
fn train_error(e: &TrainError) -> Option<String> {
    Some(match e {
        TrainError::Diverged { .. } => format!("{e}; {DIVERGED}"),
        TrainError::BatchTooLarge { .. } => format!("{e}; use a smaller --batch"),
        TrainError::OneProcessOnly { algorithm } => format!(
            "--algo {algorithm} runs inside one process; across processes use --algo lasgd (asynchronous lanes in each process, averaged across processes)"
        ),
        TrainError::ReplicasAcrossProcesses { .. } => {
            "--workers N runs N replicas inside one process; across processes use one per process (or --algo lasgd)".into()
        }
        TrainError::NotElastic { algorithm } => {
            format!("--algo {algorithm} cannot run with --elastic; use --algo localsgd, dasgd or lasgd")
        }
        TrainError::StopAtTargetAcrossProcesses => {
            "--stop-at-target works in one process only: ranks must all run the same steps; use --target-acc alone".into()
        }
        TrainError::Averaging { period, delay } => {
            format!("--avg-delay {delay} must be smaller than --avg-period {period} (and the period at least 1)")
        }
        TrainError::SettingsDiffer { setting, rank, value, expected } => {
            let (what, fix) = match setting.as_str() {
                "params" => (format!("rank {rank}'s model has {value} parameters but rank 0's has {expected}"), " (--model/--hidden)"),
                "train_samples" => (format!("rank {rank} trains on {value} samples but rank 0 on {expected}"), " (--train-samples, --data-dir)"),
                "start_step" => (format!("rank {rank} resumes at step {value} but rank 0 at step {expected}"), " (--resume)"),
                _ => (format!("rank {rank} runs {} {value} but rank 0 runs {expected}", setting_flag(setting)), ""),
            };
            format!("{what}; every rank of a job must use the same settings{fix}")
        }
        TrainError::Engine(e) => return engine_error(e),
        TrainError::Comm(_) => return None,
    })
}

/// The flag that sets one of the settings the ranks of a job compare (see
/// [`TrainError::SettingsDiffer`]).
fn setting_flag(setting: &str) -> String {
    match setting {
        "model" => "--model/--hidden".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The CLI's sentence for an [`EngineError`] whose fix is a flag or a command; `None` for
/// the others.
fn engine_error(e: &EngineError) -> Option<String> {
    Some(match e {
        EngineError::Diverged { .. } => format!("{e}; {DIVERGED}"),
        EngineError::NoAdapter(_) => format!("{e} (--backend)"),
        EngineError::TooLarge { batch, .. } => format!("{e}; {}", too_large(*batch)),
        EngineError::NoSuchAdapter { index, count } => format!(
            "adapter index {index} does not exist: there are {count} adapter(s) (indices 0..{}); run `asgd devices` to list them",
            count.saturating_sub(1)
        ),
        EngineError::DataUnavailable(d) => format!("{}; {}", d.problem(), data_fix(d)),
        _ => return None,
    })
}

/// How to get a dataset's files with `asgd data fetch` or the data flags.
fn data_fix(d: &DataUnavailable) -> String {
    let kind = d.kind.name();
    match &d.why {
        Why::NoFolder | Why::NoFile { .. } if d.kind == DataKind::Digits => {
            "point --data-dir at the folder that holds one, or leave it out to use the copy built into asgd".into()
        }
        Why::NoFolder | Why::NoFile { .. } if d.default_dir => {
            format!("run `asgd data fetch {kind}` to download the files there, or pass --data-dir DIR")
        }
        Why::NoFolder | Why::NoFile { .. } => format!(
            "run `asgd data fetch {kind} --dir {}` or point --data-dir at the folder that holds the files",
            d.dir.display()
        ),
        Why::Corrupt { .. } => format!("download it again (`asgd data fetch {kind} --dir {}`)", d.dir.display()),
        Why::DownloadFailed { .. } => {
            format!("check the network connection, or pass --mirror URL of a folder that serves {}", d.mirror_content())
        }
        Why::NoMirror => format!("pass --mirror URL of a folder that serves {}", d.mirror_content()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_names_settings_and_the_cli_names_flags() {
        let diverged = anyhow::Error::from(TrainError::Diverged { step: 7, loss: f64::NAN });
        assert_eq!(
            message(&diverged),
            "the training loss became NaN at step 7; lower the learning rate (--lr) or the momentum (--momentum)"
        );
        let batch = anyhow::Error::from(TrainError::BatchTooLarge { batch: 5000, samples: 1437, world: 1 });
        assert_eq!(
            message(&batch),
            "the batch size 5000 is larger than the 1437 training samples; use a smaller --batch"
        );
        let engine = anyhow::Error::from(EngineError::Diverged { step: 1, loss: f64::INFINITY });
        assert!(message(&engine).ends_with("(--momentum)"));
        for e in [diverged, batch] {
            assert!(!e.to_string().contains("--"), "{e}");
        }
    }

    #[test]
    fn ranks_with_other_settings_are_told_the_flag() {
        let differ = |setting: &str, value: &str, expected: &str| {
            let e = TrainError::SettingsDiffer {
                setting: setting.into(),
                rank: 2,
                value: value.into(),
                expected: expected.into(),
            };
            message(&anyhow::Error::from(e))
        };
        assert_eq!(
            differ("algo", "dasgd", "localsgd"),
            "rank 2 runs --algo dasgd but rank 0 runs localsgd; every rank of a job must use the same settings"
        );
        assert!(differ("avg_period", "4", "8").starts_with("rank 2 runs --avg-period 4 but rank 0 runs 8;"));
        assert!(differ("model", "mlp-64-10", "mlp-64-32-10").starts_with("rank 2 runs --model/--hidden mlp-64-10 "));
        assert!(
            differ("params", "2410", "5130").starts_with("rank 2's model has 2410 parameters but rank 0's has 5130;")
        );
    }

    fn missing(kind: DataKind, dir: &str, default_dir: bool, why: Why) -> anyhow::Error {
        anyhow::Error::from(EngineError::DataUnavailable(DataUnavailable { kind, dir: dir.into(), default_dir, why }))
    }

    #[test]
    fn missing_data_is_fixed_with_asgd_data_fetch_or_the_data_flags() {
        let file = |folder: &str, file: &str| Why::NoFile { folder: folder.into(), file: file.into() };
        let given = missing(DataKind::Mnist, "/d", false, file("/d/mnist", "train-images-idx3-ubyte.gz"));
        assert_eq!(
            message(&given),
            "/d/mnist: the mnist file train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) is missing; \
             run `asgd data fetch mnist --dir /d` or point --data-dir at the folder that holds the files"
        );
        let default = missing(DataKind::Cifar10, "/cache/cifar10", true, Why::NoFolder);
        assert_eq!(
            message(&default),
            "/cache/cifar10: the cifar10 folder does not exist; \
             run `asgd data fetch cifar10` to download the files there, or pass --data-dir DIR"
        );
        let digits = missing(DataKind::Digits, "/d", false, file("/d", "digits.csv.gz"));
        assert!(message(&digits).ends_with(
            "point --data-dir at the folder that holds one, or leave it out to use the copy built into asgd"
        ));
        let corrupt = Why::Corrupt { path: "/d/test_batch.bin".into(), problem: "label 12 is outside 0..=9".into() };
        assert_eq!(
            message(&missing(DataKind::Cifar10, "/d", false, corrupt)),
            "/d/test_batch.bin: label 12 is outside 0..=9; download it again (`asgd data fetch cifar10 --dir /d`)"
        );
        let failed = Why::DownloadFailed { file: "t.gz".into(), failures: vec!["http://m/t.gz: HTTP 404".into()] };
        assert_eq!(
            message(&missing(DataKind::FashionMnist, "/d", false, failed)),
            "could not download t.gz into /d: http://m/t.gz: HTTP 404; check the network connection, \
             or pass --mirror URL of a folder that serves the fashion-mnist .gz files"
        );
        assert_eq!(
            message(&missing(DataKind::Cifar10, "/d", false, Why::NoMirror)),
            "the mirror list is empty; pass --mirror URL of a folder that serves cifar-10-binary.tar.gz"
        );
        // The library's own sentences name its functions, never a flag or a command.
        for e in [given, default, digits] {
            let library = e.to_string();
            assert!(!library.contains("--") && !library.contains("asgd "), "{library}");
            assert!(
                library.contains("data::fetch") || library.ends_with("no folder for the embedded copy"),
                "{library}"
            );
        }
    }

    #[test]
    fn a_cause_under_context_is_worded_for_the_cli_and_the_context_kept() {
        let e = missing(DataKind::Mnist, "/d", false, Why::NoFolder).context("loading the test set");
        assert_eq!(
            message(&e),
            "loading the test set: /d: the mnist folder does not exist; \
             run `asgd data fetch mnist --dir /d` or point --data-dir at the folder that holds the files"
        );
        let adapter = anyhow::Error::from(EngineError::NoSuchAdapter { index: 3, count: 2 });
        assert_eq!(
            message(&adapter),
            "adapter index 3 does not exist: there are 2 adapter(s) (indices 0..1); run `asgd devices` to list them"
        );
        assert!(adapter.to_string().ends_with("`list_adapters` lists them"), "{adapter}");
    }

    #[test]
    fn an_os_error_is_printed_once() {
        let denied = std::io::Error::from_raw_os_error(13);
        let bind = asgd::comm::CommError::Bind { addr: "127.0.0.1:80".parse().unwrap(), source: denied };
        let line = message(&anyhow::Error::from(bind));
        assert_eq!(line.matches("os error 13").count(), 1, "{line}");
        assert!(line.starts_with("could not listen on 127.0.0.1:80: ") && line.contains("MASTER_PORT"), "{line}");
        // Context that does not repeat its cause still gets the cause appended.
        let ctx = anyhow::Error::from(std::io::Error::from_raw_os_error(2)).context("could not read data.bin");
        let line = message(&ctx);
        assert!(line.starts_with("could not read data.bin: ") && line.contains("os error 2"), "{line}");
    }
}
