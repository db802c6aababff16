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
        Some(e @ EngineError::TooLarge { batch, .. }) => return format!("{e}; {}", too_large(*batch)),
        Some(e @ EngineError::NoAdapter(_)) => return format!("{e} (--backend)"),
        _ => {}
    }
    format!("{err:#}")
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
        TrainError::StopAtTargetAcrossProcesses => {
            "--stop-at-target works in one process only: ranks must all run the same steps; use --target-acc alone".into()
        }
        TrainError::Averaging { period, delay } => {
            format!("--avg-delay {delay} must be smaller than --avg-period {period} (and the period at least 1)")
        }
        TrainError::Engine(EngineError::NoAdapter(_)) => format!("{e} (--backend)"),
        TrainError::Engine(EngineError::TooLarge { batch, .. }) => format!("{e}; {}", too_large(*batch)),
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
}
