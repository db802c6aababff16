//! The library's errors in the CLI's words: the one line `asgd` prints for a failure, with
//! the flag to change where the library names only the setting.

use asgd::EngineError;

/// The line after `error: ` for `err`: its whole chain of causes, and for the library's
/// typed errors the flag that fixes it.
pub fn message(err: &anyhow::Error) -> String {
    match err.downcast_ref::<EngineError>() {
        Some(e @ EngineError::Diverged { .. }) => return format!("{e}; {DIVERGED}"),
        Some(e @ EngineError::NoAdapter(_)) => return format!("{e} (--backend)"),
        _ => {}
    }
    format!("{err:#}")
}

const DIVERGED: &str = "lower the learning rate (--lr) or the momentum (--momentum)";
