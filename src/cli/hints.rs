//! The library's errors in the CLI's words: the one line `asgd` prints for a failure, with
//! the flag to change where the library names only the setting.

use asgd::{EngineError, TrainError};

/// The line after `error: ` for `err`: its whole chain of causes, and for the library's
/// typed errors the flag that fixes it.
pub fn message(err: &anyhow::Error) -> String {
    if let Some(e) = err.downcast_ref::<TrainError>() {
        if let Some(line) = train_error(e) {
            return line;
        }
    }
    match err.downcast_ref::<EngineError>() {
        Some(e @ EngineError::Diverged { .. }) => return format!("{e}; {DIVERGED}"),
        Some(e @ EngineError::NoAdapter(_)) => return format!("{e} (--backend)"),
        _ => {}
    }
    chain(err)
}

/// `err` and its causes joined by `: `, leaving out a cause whose text the message already
/// holds: many errors put their source in their own sentence ("could not listen on ...:
/// Permission denied (os error 13); ...") and also report it as their source, and the OS's
/// words should appear once.
fn chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
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
        TrainError::StopAtTargetAcrossProcesses => {
            "--stop-at-target works in one process only: ranks must all run the same steps; use --target-acc alone".into()
        }
        TrainError::Averaging { period, delay } => {
            format!("--avg-delay {delay} must be smaller than --avg-period {period} (and the period at least 1)")
        }
        TrainError::Engine(EngineError::NoAdapter(_)) => format!("{e} (--backend)"),
        TrainError::Comm(_) | TrainError::Engine(_) => return None,
    })
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
