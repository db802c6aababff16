//! Handles for collectives in flight: start now, collect the result later.

use crate::error::{CommError, Op};

/// What the comm thread sends back: the caller's buffer (always returned, even on error, so
/// its allocation can be reused) and the outcome.
pub(crate) type Reply = (Vec<f32>, Result<(), CommError>);

/// A collective running on the comm thread. It owns the buffer until the collective is done;
/// [`Handle::wait`] gives the result back.
///
/// Dropping a handle does not cancel the collective (the other ranks are taking part in it);
/// its result is then discarded.
#[must_use = "a collective's result (and its buffer) comes back only through wait()"]
pub struct Handle<T> {
    op: Op,
    rx: flume::Receiver<Reply>,
    finish: fn(Vec<f32>) -> T,
}

impl<T> Handle<T> {
    pub(crate) fn new(op: Op, rx: flume::Receiver<Reply>, finish: fn(Vec<f32>) -> T) -> Self {
        Handle { op, rx, finish }
    }

    /// A handle that is already done with `err` (for arguments rejected before any I/O).
    pub(crate) fn failed(op: Op, buf: Vec<f32>, err: CommError, finish: fn(Vec<f32>) -> T) -> Self {
        let (tx, rx) = flume::bounded(1);
        let _ = tx.send((buf, Err(err)));
        Handle { op, rx, finish }
    }

    /// The collective this handle waits for.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Whether the collective has finished (successfully or not); `wait` will not block.
    pub fn is_done(&self) -> bool {
        !self.rx.is_empty() || self.rx.is_disconnected()
    }

    /// Blocks until the collective finishes and returns its result. The wait is bounded by
    /// the communicator's timeout: a dead or hung peer turns into an error, not a hang.
    ///
    /// Errors: the collective's [`CommError`]; the buffer is dropped (use
    /// [`Handle::wait_with_buffer`] to keep it).
    pub fn wait(self) -> Result<T, CommError> {
        let finish = self.finish;
        let (buf, result) = self.wait_with_buffer();
        result.map(|()| finish(buf))
    }

    /// Like [`Handle::wait`] but returns the buffer in every case, together with the outcome;
    /// after an error its contents are unspecified.
    pub fn wait_with_buffer(self) -> (Vec<f32>, Result<(), CommError>) {
        let op = self.op;
        self.rx.recv().unwrap_or_else(|_| (Vec::new(), Err(CommError::Shutdown { op })))
    }

    /// Returns the result if the collective has finished, or the handle back if not.
    pub fn try_wait(self) -> Result<Result<T, CommError>, Self> {
        if self.is_done() {
            Ok(self.wait())
        } else {
            Err(self)
        }
    }
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("op", &self.op).field("done", &self.is_done()).finish()
    }
}
