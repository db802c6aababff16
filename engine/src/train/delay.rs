//! Emulated slow or loaded devices (`--inject-delay`), reproducible from the run's seed.
//!
//! Grammar: clauses separated by `;`, each `TARGET:DELAY`:
//!
//! ```text
//! TARGET := all | worker=N            (N counts from 0)
//! DELAY  := factor=F                  the worker runs F times slower: each step sleeps
//!                                     (F - 1) x the measured time of one undelayed step
//!         | fixed=D                   each step sleeps D
//!         | exp=D                     each step sleeps an exponential random time of mean D
//! D      := a number with ms or s     (20ms, 0.5s)
//! ```
//!
//! Examples: `worker=1:factor=4` (worker 1 four times slower), `all:exp=20ms`,
//! `worker=0:fixed=5ms;worker=2:factor=2`. Later clauses for the same worker add up.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};

/// One kind of delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Delay {
    /// Sleep `(factor - 1)` base steps.
    Factor(f64),
    Fixed(Duration),
    /// Exponentially distributed with this mean.
    Exp(Duration),
}

/// A parsed `--inject-delay` spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DelaySpec {
    /// `(worker or None for all, delay)`.
    clauses: Vec<(Option<usize>, Delay)>,
}

fn duration(s: &str, spec: &str) -> Result<Duration> {
    let bad = || {
        EngineError::InvalidArgument(format!(
            "bad duration '{s}' in --inject-delay '{spec}'; write it like 20ms or 0.5s"
        ))
    };
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        return Err(bad());
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * scale))
}

impl DelaySpec {
    /// Parses the grammar in the module documentation.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            EngineError::InvalidArgument(format!(
                "bad --inject-delay '{spec}': {why}; examples: worker=1:factor=4, all:exp=20ms"
            ))
        };
        let mut clauses = Vec::new();
        for clause in spec.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let (target, delay) = clause.split_once(':').ok_or_else(|| bad("a clause is TARGET:DELAY"))?;
            let target = match target.trim() {
                "all" => None,
                t => match t.strip_prefix("worker=").map(|n| n.trim().parse::<usize>()) {
                    Some(Ok(n)) => Some(n),
                    _ => return Err(bad("the target is 'all' or 'worker=N'")),
                },
            };
            let (kind, value) = delay.split_once('=').ok_or_else(|| bad("a delay is factor=F, fixed=D or exp=D"))?;
            let delay = match kind.trim() {
                "factor" => match value.trim().parse::<f64>() {
                    Ok(f) if f >= 1.0 && f.is_finite() => Delay::Factor(f),
                    _ => return Err(bad("factor must be a number of at least 1")),
                },
                "fixed" => Delay::Fixed(duration(value.trim(), spec)?),
                "exp" => Delay::Exp(duration(value.trim(), spec)?),
                _ => return Err(bad("a delay is factor=F, fixed=D or exp=D")),
            };
            clauses.push((target, delay));
        }
        if clauses.is_empty() {
            return Err(bad("it is empty"));
        }
        Ok(Self { clauses })
    }

    /// True when no clause applies anywhere.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Checks that every named worker exists.
    pub fn check_workers(&self, workers: usize) -> Result<()> {
        for (w, _) in &self.clauses {
            if let Some(w) = w.filter(|&w| w >= workers) {
                return Err(EngineError::InvalidArgument(format!(
                    "--inject-delay names worker {w}, but there are only {workers} (numbered from 0)"
                )));
            }
        }
        Ok(())
    }

    /// True when some clause needs the time of an undelayed step (a `factor`).
    pub fn needs_base_step(&self) -> bool {
        self.clauses.iter().any(|(_, d)| matches!(d, Delay::Factor(_)))
    }

    /// The mean extra time per step of `worker`, given an undelayed step of `base`.
    pub fn mean_delay(&self, worker: usize, base: Duration) -> Duration {
        self.for_worker(worker)
            .map(|d| match d {
                Delay::Factor(f) => base.mul_f64(f - 1.0),
                Delay::Fixed(t) | Delay::Exp(t) => t,
            })
            .sum()
    }

    fn for_worker(&self, worker: usize) -> impl Iterator<Item = Delay> + '_ {
        self.clauses.iter().filter(move |(w, _)| w.is_none_or(|w| w == worker)).map(|&(_, d)| d)
    }

    /// The sampler of one worker's delays, seeded from the run's seed and the worker.
    pub fn sampler(&self, worker: usize, seed: u64, base: Duration) -> DelaySampler {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xde1a_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.set_stream(worker as u64 + 1);
        DelaySampler { delays: self.for_worker(worker).collect(), base, rng }
    }
}

/// Draws one worker's per-step delays.
pub struct DelaySampler {
    delays: Vec<Delay>,
    base: Duration,
    rng: ChaCha8Rng,
}

impl DelaySampler {
    /// The delay of the next step (zero when none applies).
    pub fn next(&mut self) -> Duration {
        let mut total = Duration::ZERO;
        for d in &self.delays {
            total += match *d {
                Delay::Factor(f) => self.base.mul_f64(f - 1.0),
                Delay::Fixed(t) => t,
                Delay::Exp(mean) => {
                    // Inverse transform: -ln(U) is Exp(1) for U uniform in (0, 1].
                    let u: f64 = 1.0 - self.rng.random::<f64>();
                    mean.mul_f64(-u.ln())
                }
            };
        }
        total
    }

    /// Sleeps the next step's delay, if any.
    pub fn sleep(&mut self) {
        let d = self.next();
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}
