//! What a rank needs to join a job, and how it is read from the environment.
//!
//! The variables follow torchrun (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), with
//! Slurm's and Open MPI's names as fallbacks, so a process started by `asgd launch`, by hand,
//! by `srun` or by `mpirun` joins the same way. The rest are asgd's own:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ASGD_BIND_ADDR` | IP to listen on | `MASTER_ADDR` if loopback, else all interfaces of its family |
//! | `ASGD_ADVERTISE_ADDR` | IP other ranks use to reach this one | the bind IP, or the source IP of the route to rank 0 |
//! | `ASGD_SECRET` / `ASGD_SECRET_FILE` | shared secret for mutual authentication | none: loopback only |
//! | `ASGD_ALLOW_INSECURE` | `1` to listen beyond loopback without a secret | off |
//! | `ASGD_COMM_TIMEOUT_S` | seconds any blocking step may wait | 300 |
//! | `ASGD_COMM_CHUNK_BYTES` | bytes per data frame in the ring pipeline | 1 MiB |
//! | `ASGD_COMM_CHECKSUM` | `0` to skip CRC-32 on data frames (frames that are sealed need none) | on |
//! | `ASGD_COMM_ENCRYPT` | `0` to send frames after the handshake unsealed, on a network you trust; with a secret they are otherwise encrypted and authenticated (ChaCha20-Poly1305) | on with a secret |
//! | `ASGD_SOCKET_BUFFER_BYTES` | SO_SNDBUF/SO_RCVBUF; unset leaves the kernel's autotuning | unset |
//! | `ASGD_NET_DELAY_MS` | emulated delay added before every frame sent | 0 |
//! | `ASGD_NET_RATE_MBPS` | emulated link rate in MB/s (10^6 bytes) for sending | unlimited |

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::CommError;
use crate::frame::DEFAULT_MAX_FRAME_BYTES;

/// Default for [`CommConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default for [`CommConfig::chunk_bytes`]: see BENCHMARKS for how it was chosen.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// torchrun's default port, used when `MASTER_PORT` is unset.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

/// A shared secret. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes. Errors: [`CommError::Config`] for an empty secret.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, CommError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(CommError::Config(
                "the shared secret is empty; set ASGD_SECRET to a non-empty value (e.g. 32 random hex digits)".into(),
            ));
        }
        Ok(Secret(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Everything a rank needs to join a job and run collectives.
///
/// Build one with [`CommConfig::from_env`], or [`CommConfig::new`] and set fields. Fields are
/// public so callers can override what the environment said.
#[derive(Debug, Clone)]
pub struct CommConfig {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks in the job.
    pub world_size: usize,
    /// Host name or IP (v4 or v6, brackets allowed) where rank 0 listens.
    pub master_addr: String,
    /// Port where rank 0 listens.
    pub master_port: u16,
    /// IP to listen on; `None` picks `master_addr` when it is loopback, else all interfaces.
    pub bind_addr: Option<IpAddr>,
    /// IP other ranks should dial to reach this one; `None` uses the bind IP, or when that is
    /// unspecified, the source IP of this rank's connection to rank 0.
    pub advertise_addr: Option<IpAddr>,
    /// Shared secret for mutual authentication; `None` restricts the job to loopback unless
    /// `allow_insecure`.
    pub secret: Option<Secret>,
    /// Accept unauthenticated peers on non-loopback addresses.
    pub allow_insecure: bool,
    /// Longest any blocking step may wait without progress (connect, read, write, rendezvous).
    pub timeout: Duration,
    /// Bytes per data frame; collectives stream buffers in pieces of this size so that sending,
    /// receiving and reducing overlap.
    pub chunk_bytes: usize,
    /// Largest payload accepted from a peer, in bytes.
    pub max_frame_bytes: usize,
    /// CRC-32 every data frame that is not sealed.
    pub checksum: bool,
    /// With a secret, seal every frame after the handshake (ChaCha20-Poly1305 under keys of
    /// that handshake). Ignored without a secret, which gives nothing to derive keys from.
    /// Every rank must agree.
    pub encrypt: bool,
    /// SO_SNDBUF and SO_RCVBUF in bytes; `None` keeps the kernel's autotuning.
    pub socket_buffer_bytes: Option<usize>,
    /// Emulated network delay, slept before each frame is sent.
    pub net_delay: Duration,
    /// Emulated link rate in MB/s (10^6 bytes per second); sending is paced to it.
    pub net_rate_mbps: Option<f64>,
}

impl CommConfig {
    /// A config for `rank` of `world_size` meeting at `master_addr:master_port`, with defaults
    /// for everything else (no secret: loopback only).
    pub fn new(rank: usize, world_size: usize, master_addr: impl Into<String>, master_port: u16) -> Self {
        CommConfig {
            rank,
            world_size,
            master_addr: master_addr.into(),
            master_port,
            bind_addr: None,
            advertise_addr: None,
            secret: None,
            allow_insecure: false,
            timeout: DEFAULT_TIMEOUT,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            checksum: true,
            encrypt: true,
            socket_buffer_bytes: None,
            net_delay: Duration::ZERO,
            net_rate_mbps: None,
        }
    }

    /// Reads the process environment (see the module docs for the variables). With none of
    /// the rank variables set, the result is a world of one.
    ///
    /// Errors: [`CommError::Config`] naming the variable with a bad value and how to fix it.
    pub fn from_env() -> Result<Self, CommError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`CommConfig::from_env`] over any lookup function, so parsing is testable without
    /// touching the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CommError> {
        let get = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let first = |names: &[&'static str]| names.iter().find_map(|n| get(n).map(|v| (*n, v)));

        let rank = first(&["RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"]);
        let world = first(&["WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"]);
        let (rank, world_size) = match (rank, world) {
            (None, None) => (0, 1),
            (Some((name, _)), None) => {
                return Err(CommError::Config(format!(
                    "{name} is set but WORLD_SIZE is not; set WORLD_SIZE to the number of ranks"
                )))
            }
            (None, Some((name, _))) => {
                return Err(CommError::Config(format!(
                    "{name} is set but RANK is not; set RANK to this process's rank (0 to WORLD_SIZE-1)"
                )))
            }
            (Some((rn, rv)), Some((wn, wv))) => {
                (parse_num::<usize>(rn, &rv, "a rank number")?, parse_num::<usize>(wn, &wv, "a number of ranks")?)
            }
        };
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_owned());
        let master_port = match get("MASTER_PORT") {
            Some(v) => match parse_num::<u16>("MASTER_PORT", &v, "a TCP port (1-65535)")? {
                0 => {
                    return Err(CommError::Config(
                        "MASTER_PORT is 0, which would make rank 0 listen on a port the other ranks cannot know; set it to a free TCP port (1-65535), the same on every rank".into(),
                    ))
                }
                port => port,
            },
            None => DEFAULT_MASTER_PORT,
        };
        let mut cfg = CommConfig::new(rank, world_size, master_addr, master_port);

        if let Some(v) = get("ASGD_BIND_ADDR") {
            cfg.bind_addr = Some(parse_ip("ASGD_BIND_ADDR", &v)?);
        }
        if let Some(v) = get("ASGD_ADVERTISE_ADDR") {
            cfg.advertise_addr = Some(parse_ip("ASGD_ADVERTISE_ADDR", &v)?);
        }
        // An explicit secret wins over a file, as with most tools that take both.
        if let Some(v) = get("ASGD_SECRET") {
            cfg.secret = Some(Secret::new(v)?);
        } else if let Some(path) = get("ASGD_SECRET_FILE") {
            cfg.secret = Some(read_secret_file(Path::new(&path))?);
        }
        if let Some(v) = get("ASGD_ALLOW_INSECURE") {
            cfg.allow_insecure = parse_bool("ASGD_ALLOW_INSECURE", &v)?;
        }
        if let Some(v) = get("ASGD_COMM_TIMEOUT_S") {
            cfg.timeout = parse_duration_s("ASGD_COMM_TIMEOUT_S", &v, 1.0)?;
        }
        if let Some(v) = get("ASGD_COMM_CHUNK_BYTES") {
            cfg.chunk_bytes = parse_num::<usize>("ASGD_COMM_CHUNK_BYTES", &v, "a number of bytes")?;
        }
        if let Some(v) = get("ASGD_COMM_CHECKSUM") {
            cfg.checksum = parse_bool("ASGD_COMM_CHECKSUM", &v)?;
        }
        if let Some(v) = get("ASGD_COMM_ENCRYPT") {
            cfg.encrypt = parse_bool("ASGD_COMM_ENCRYPT", &v)?;
            if cfg.encrypt && cfg.secret.is_none() {
                return Err(CommError::Config(
                    "ASGD_COMM_ENCRYPT is on but no shared secret is set, and the keys come from the secret; set ASGD_SECRET (or ASGD_SECRET_FILE) on every rank, or unset ASGD_COMM_ENCRYPT".into(),
                ));
            }
        }
        if let Some(v) = get("ASGD_SOCKET_BUFFER_BYTES") {
            cfg.socket_buffer_bytes = Some(parse_num::<usize>("ASGD_SOCKET_BUFFER_BYTES", &v, "a number of bytes")?);
        }
        if let Some(v) = get("ASGD_NET_DELAY_MS") {
            cfg.net_delay = parse_duration_s("ASGD_NET_DELAY_MS", &v, 1e-3)?;
        }
        if let Some(v) = get("ASGD_NET_RATE_MBPS") {
            let rate = parse_num::<f64>("ASGD_NET_RATE_MBPS", &v, "a rate in MB/s")?;
            cfg.net_rate_mbps = Some(rate);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the fields against each other.
    ///
    /// Errors: [`CommError::Config`] naming the field and the fix.
    pub fn validate(&self) -> Result<(), CommError> {
        if self.world_size == 0 {
            return Err(CommError::Config("WORLD_SIZE is 0; set it to the number of ranks (1 or more)".into()));
        }
        if self.rank >= self.world_size {
            return Err(CommError::Config(format!(
                "RANK is {} but WORLD_SIZE is {}; ranks run from 0 to WORLD_SIZE-1",
                self.rank, self.world_size
            )));
        }
        if self.world_size > (1 << 20) {
            return Err(CommError::Config(format!(
                "WORLD_SIZE is {}, more than the 1048576 ranks this transport supports",
                self.world_size
            )));
        }
        if self.world_size > 1 && self.master_port == 0 {
            return Err(CommError::Config(
                "MASTER_PORT is 0, which would make rank 0 listen on a port the other ranks cannot know; set it to a free TCP port (1-65535), the same on every rank".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(CommError::Config(
                "the comm timeout is 0; set ASGD_COMM_TIMEOUT_S to a positive number of seconds".into(),
            ));
        }
        if self.chunk_bytes < 4 || self.chunk_bytes > self.max_frame_bytes {
            return Err(CommError::Config(format!(
                "ASGD_COMM_CHUNK_BYTES is {} but must be between 4 and the frame limit of {} bytes",
                self.chunk_bytes, self.max_frame_bytes
            )));
        }
        if let Some(rate) = self.net_rate_mbps {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(CommError::Config(format!(
                    "ASGD_NET_RATE_MBPS is {rate} but must be a positive number of MB/s, or unset for no limit"
                )));
            }
        }
        Ok(())
    }

    /// Whether frames after the handshake are sealed: a secret and encryption on.
    pub(crate) fn seals(&self) -> bool {
        self.encrypt && self.secret.is_some()
    }

    /// Elements of f32 per data frame.
    pub(crate) fn chunk_elems(&self) -> usize {
        (self.chunk_bytes / 4).max(1)
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T, CommError> {
    value.parse().map_err(|_| CommError::Config(format!("{name} is {value:?}, which is not {what}; fix or unset it")))
}

fn parse_ip(name: &str, value: &str) -> Result<IpAddr, CommError> {
    value.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| {
        CommError::Config(format!(
            "{name} is {value:?}, which is not an IP address; set it to the IPv4 or IPv6 address of the network interface to use"
        ))
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, CommError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(CommError::Config(format!("{name} is {value:?}; set it to 1 or 0"))),
    }
}

fn parse_duration_s(name: &str, value: &str, unit_s: f64) -> Result<Duration, CommError> {
    let n: f64 = parse_num(name, value, "a number")?;
    Duration::try_from_secs_f64(n * unit_s).map_err(|_| {
        CommError::Config(format!("{name} is {value:?}, which is not a usable non-negative duration; fix or unset it"))
    })
}

fn read_secret_file(path: &Path) -> Result<Secret, CommError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CommError::Config(format!(
            "could not read ASGD_SECRET_FILE {}: {e}; point it at a readable file holding the shared secret",
            path.display()
        ))
    })?;
    // Editors and `echo` add a final newline; a secret never ends in one on purpose.
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    Secret::new(trimmed.to_vec()).map_err(|_| {
        CommError::Config(format!("ASGD_SECRET_FILE {} is empty; write the shared secret into it", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<CommConfig, CommError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CommConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn torchrun_names_are_read() {
        let c =
            cfg(&[("RANK", "2"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "1234")]).unwrap();
        assert_eq!((c.rank, c.world_size, c.master_addr.as_str(), c.master_port), (2, 4, "10.0.0.1", 1234));
    }

    #[test]
    fn slurm_and_openmpi_are_fallbacks() {
        let c = cfg(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "3")]).unwrap();
        assert_eq!((c.rank, c.world_size), (1, 3));
        let c = cfg(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")]).unwrap();
        assert_eq!((c.rank, c.world_size), (0, 2));
        // torchrun's names win over Slurm's.
        let c = cfg(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("SLURM_PROCID", "5"), ("SLURM_NTASKS", "8")]).unwrap();
        assert_eq!((c.rank, c.world_size), (0, 2));
    }

    #[test]
    fn nothing_set_is_a_world_of_one() {
        let c = cfg(&[]).unwrap();
        assert_eq!((c.rank, c.world_size, c.master_port), (0, 1, DEFAULT_MASTER_PORT));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = cfg(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(e.contains("RANK") && e.contains("\"x\""), "{e}");
        let e = cfg(&[("RANK", "2"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(e.contains("RANK is 2 but WORLD_SIZE is 2"), "{e}");
        let e = cfg(&[("RANK", "0")]).unwrap_err().to_string();
        assert!(e.contains("WORLD_SIZE"), "{e}");
        let e = cfg(&[("ASGD_COMM_TIMEOUT_S", "-1")]).unwrap_err().to_string();
        assert!(e.contains("ASGD_COMM_TIMEOUT_S"), "{e}");
        let e = cfg(&[("ASGD_BIND_ADDR", "eth0")]).unwrap_err().to_string();
        assert!(e.contains("ASGD_BIND_ADDR") && e.contains("not an IP address"), "{e}");
        let e = cfg(&[("ASGD_NET_RATE_MBPS", "0")]).unwrap_err().to_string();
        assert!(e.contains("ASGD_NET_RATE_MBPS"), "{e}");
        let e = cfg(&[("MASTER_PORT", "0")]).unwrap_err().to_string();
        assert!(e.contains("MASTER_PORT is 0") && e.contains("1-65535"), "{e}");
        let e = cfg(&[("ASGD_COMM_ENCRYPT", "1")]).unwrap_err().to_string();
        assert!(e.contains("ASGD_COMM_ENCRYPT") && e.contains("ASGD_SECRET"), "{e}");
    }

    #[test]
    fn asgd_variables_are_read() {
        let c = cfg(&[
            ("ASGD_BIND_ADDR", "[::1]"),
            ("ASGD_ADVERTISE_ADDR", "192.168.1.7"),
            ("ASGD_SECRET", "s3cret"),
            ("ASGD_ALLOW_INSECURE", "yes"),
            ("ASGD_COMM_TIMEOUT_S", "2.5"),
            ("ASGD_COMM_CHUNK_BYTES", "65536"),
            ("ASGD_COMM_CHECKSUM", "0"),
            ("ASGD_COMM_ENCRYPT", "off"),
            ("ASGD_NET_DELAY_MS", "3"),
            ("ASGD_NET_RATE_MBPS", "125"),
        ])
        .unwrap();
        assert_eq!(c.secret.as_ref().map(|s| s.bytes().to_vec()), Some(b"s3cret".to_vec()));
        assert_eq!(c.bind_addr, Some("::1".parse().unwrap()));
        assert_eq!(c.advertise_addr, Some("192.168.1.7".parse().unwrap()));
        assert!(c.allow_insecure && !c.checksum && !c.encrypt && !c.seals());
        assert!(cfg(&[("ASGD_SECRET", "k")]).unwrap().seals(), "a secret seals by default");
        assert!(!cfg(&[]).unwrap().seals());
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.chunk_bytes, 65536);
        assert_eq!(c.net_delay, Duration::from_millis(3));
        assert_eq!(c.net_rate_mbps, Some(125.0));
    }

    #[test]
    fn secret_file_is_read_and_trimmed_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("asgd-comm-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, b"hunter2\n").unwrap();
        let c = cfg(&[("ASGD_SECRET_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(c.secret.as_ref().map(|s| s.bytes().to_vec()), Some(b"hunter2".to_vec()));
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = cfg(&[("ASGD_SECRET_FILE", "/nonexistent/asgd-secret")]).unwrap_err().to_string();
        assert!(e.contains("ASGD_SECRET_FILE") && e.contains("/nonexistent/asgd-secret"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
