//! asgd-comm: the TCP transport of asgd. It knows nothing of GPUs.
//!
//! - [`Communicator`]: join a job ([`Communicator::from_env`] reads torchrun's, Slurm's or
//!   Open MPI's variables) and run collectives on `f32` buffers: ring all-reduce (sum and
//!   average), broadcast, all-gather, barrier. Each has a blocking form and a `start_*` form
//!   that returns a [`Handle`], so training can overlap communication.
//! - [`CommConfig`]: addresses, shared secret, timeout, chunk size, emulated network.
//! - [`frame`]: the wire format as pure functions.
//! - [`launch`]: start N local ranks of a program with the variables set (`asgd launch`).
//! - [`bench`](mod@bench): the all-reduce benchmark against a plain TCP stream (`asgd bench allreduce`).
//!
//! ```no_run
//! use asgd_comm::Communicator;
//! let comm = Communicator::from_env()?;
//! let mut grads = vec![1.0f32; 1000];
//! comm.all_reduce(&mut grads)?; // every element is now world_size
//! let pending = comm.start_average(vec![0.5; 1000]); // runs while we do other work
//! let averaged = pending.wait()?;
//! # Ok::<(), asgd_comm::CommError>(())
//! ```
//!
//! Security: every connection is mutually authenticated with HMAC-SHA256 when a shared secret
//! is set (`ASGD_SECRET` or `ASGD_SECRET_FILE`), and every frame after the handshake is then
//! sealed with ChaCha20-Poly1305 under keys derived from that handshake, one per direction,
//! with the frame's position as nonce: an altered, replayed, reordered or dropped frame is an
//! error on both ends naming the link (`ASGD_COMM_ENCRYPT=0` turns sealing off on trusted
//! networks). Without a secret the job listens on loopback only, unless
//! `ASGD_ALLOW_INSECURE=1`. Listeners run handshakes concurrently with a deadline each, so
//! connections that never authenticate do not hold the job up, and they learn nothing.

#![warn(missing_docs)]

#[cfg(not(target_endian = "little"))]
compile_error!("asgd-comm sends f32 buffers in their in-memory byte order, which must be little-endian");

mod admission;
mod auth;
mod collectives;
mod communicator;
mod config;
mod elastic;
mod error;
pub mod frame;
mod handle;
mod liveness;
mod plan;
mod rendezvous;
mod transport;

pub mod bench;
pub mod launch;

pub use communicator::Communicator;
pub use config::{CommConfig, Secret, DEFAULT_CHUNK_BYTES, DEFAULT_MASTER_PORT, DEFAULT_TIMEOUT};
pub use elastic::{Agreement, Change, Elastic, JoinedAt, Membership};
pub use error::{CommError, Op};
pub use handle::Handle;
