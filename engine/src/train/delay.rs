//! Emulated slow or loaded devices (the CLI's delay spec), reproducible from the run's seed.
//!
//! Grammar: clauses separated by `;`, each `TARGET:DELAY`:
//!
//! ```text
//! TARGET := all | worker=N            (N counts from 0)
//! DELAY  := factor=F                  the worker runs F times slower: each step sleeps
//!                                     (F - 1) x (the measured time of one undelayed step
//!                                     + the mean of the worker's other delays)
//!         | fixed=D                   each step sleeps D
//!         | exp=D                     each step sleeps an exponential random time of mean D
//! D      := a number with ms or s     (20ms, 0.5s)
//! ```
//!
//! Examples: `worker=1:factor=4` (worker 1 four times slower), `all:exp=20ms`,
//! `worker=0:fixed=5ms;worker=2:factor=2`. Clauses for the same worker add up.
//!
//! On one machine the workers share the GPU, so a sleeping worker leaves its share to the
//! others: a straggler hardly slows lock-step training when compute, not the delays, fills the
//! step. To emulate separate devices, give every worker a device time that dominates its
//! compute (`all:fixed=50ms;worker=1:factor=4` with a small model or batch): then
//! [`DelaySpec::ideal_speedup`] is what asynchrony can gain at best.

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

/// A parsed delay spec (`worker=1:factor=4`, `all:exp=20ms`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DelaySpec {
    /// `(worker or None for all, delay)`.
    clauses: Vec<(Option<usize>, Delay)>,
}

fn duration(s: &str, spec: &str) -> Result<Duration> {
    let bad = || {
        EngineError::InvalidArgument(format!(
            "bad duration '{s}' in the delay spec '{spec}'; write it like 20ms or 0.5s"
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
                "bad delay spec '{spec}': {why}; examples: worker=1:factor=4, all:exp=20ms"
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
                    "the delay spec names worker {w}, but there are only {workers} (numbered from 0)"
                )));
            }
        }
        Ok(())
    }

    /// The delays of process `rank` as a spec for its local workers: clauses naming this rank
    /// apply to all of them, clauses naming other ranks are dropped.
    pub fn for_rank(&self, rank: usize) -> DelaySpec {
        DelaySpec {
            clauses: self
                .clauses
                .iter()
                .filter(|(w, _)| w.is_none_or(|w| w == rank))
                .map(|&(_, d)| (None, d))
                .collect(),
        }
    }

    /// True when some clause needs the time of an undelayed step (a `factor`).
    pub fn needs_base_step(&self) -> bool {
        self.clauses.iter().any(|(_, d)| matches!(d, Delay::Factor(_)))
    }

    /// The spec as given (for reports).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .clauses
            .iter()
            .map(|(w, d)| {
                let target = w.map_or("all".to_string(), |w| format!("worker={w}"));
                let delay = match d {
                    Delay::Factor(f) => format!("factor={f}"),
                    Delay::Fixed(t) => format!("fixed={}ms", t.as_secs_f64() * 1e3),
                    Delay::Exp(t) => format!("exp={}ms", t.as_secs_f64() * 1e3),
                };
                format!("{target}:{delay}")
            })
            .collect();
        parts.join(";")
    }

    /// The mean step time of `worker`: an undelayed step of `base`, its fixed and
    /// exponential delays, all times the product of its factors.
    pub fn mean_step(&self, worker: usize, base: Duration) -> Duration {
        let (mut time, mut factor) = (base, 1.0);
        for d in self.for_worker(worker) {
            match d {
                Delay::Factor(f) => factor *= f,
                Delay::Fixed(t) | Delay::Exp(t) => time += t,
            }
        }
        time.mul_f64(factor)
    }

    /// Throughput of asynchronous workers (each at its own pace) over that of lock-step ones
    /// (each step as slow as the slowest), with `n` workers whose undelayed step is `base`:
    /// `max_w T_w * sum_w (1 / T_w) / n`. The best an asynchronous algorithm can gain in time
    /// to accuracy, if it needed no more samples than the synchronous one.
    pub fn ideal_speedup(&self, n: usize, base: Duration) -> f64 {
        let t: Vec<f64> = (0..n).map(|w| self.mean_step(w, base).as_secs_f64().max(1e-12)).collect();
        let slowest = t.iter().cloned().fold(0.0, f64::max);
        slowest * t.iter().map(|x| 1.0 / x).sum::<f64>() / n as f64
    }

    fn for_worker(&self, worker: usize) -> impl Iterator<Item = Delay> + '_ {
        self.clauses.iter().filter(move |(w, _)| w.is_none_or(|w| w == worker)).map(|&(_, d)| d)
    }

    /// The sampler of one worker's delays, seeded from the run's seed and the worker.
    pub fn sampler(&self, worker: usize, seed: u64, base: Duration) -> DelaySampler {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xde1a_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.set_stream(worker as u64 + 1);
        // A factor stretches the worker's whole mean step, its other delays included, so it
        // adds (product of factors - 1) x (base + mean of the other delays) per step.
        let unscaled = DelaySpec {
            clauses: self.clauses.iter().filter(|(_, d)| !matches!(d, Delay::Factor(_))).cloned().collect(),
        };
        let stretch = self.mean_step(worker, base).saturating_sub(unscaled.mean_step(worker, base));
        let mut delays: Vec<Delay> = self.for_worker(worker).filter(|d| !matches!(d, Delay::Factor(_))).collect();
        if !stretch.is_zero() {
            delays.push(Delay::Fixed(stretch));
        }
        DelaySampler { delays, rng }
    }
}

/// Draws one worker's per-step delays.
pub struct DelaySampler {
    /// Fixed and exponential delays only: factors are folded into a fixed delay.
    delays: Vec<Delay>,
    rng: ChaCha8Rng,
}

impl DelaySampler {
    /// The delay of the next step (zero when none applies).
    pub fn next_delay(&mut self) -> Duration {
        let mut total = Duration::ZERO;
        for d in &self.delays {
            total += match *d {
                Delay::Factor(_) => unreachable!("factors are folded into a fixed delay by DelaySpec::sampler"),
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
        let d = self.next_delay();
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        for s in ["worker=1:factor=4", "all:exp=20ms", "worker=0:fixed=5ms;worker=2:factor=2", "all:fixed=0.05s"] {
            DelaySpec::parse(s).unwrap();
        }
        for bad in ["", "worker=x:factor=2", "all:factor=0.5", "all:fixed=20", "all:slow=2", "nobody:fixed=1ms"] {
            assert!(DelaySpec::parse(bad).is_err(), "{bad}");
        }
        let e = DelaySpec::parse("worker=4:fixed=1ms").unwrap().check_workers(4).unwrap_err();
        assert!(e.to_string().contains("worker 4"), "{e}");
    }

    #[test]
    fn a_factor_stretches_the_whole_step() {
        let s = DelaySpec::parse("all:fixed=50ms;worker=1:factor=4").unwrap();
        let base = Duration::from_millis(10);
        assert_eq!(s.mean_step(0, base), Duration::from_millis(60));
        assert_eq!(s.mean_step(1, base), Duration::from_millis(240));
        // Worker 1 sleeps its 50 ms and 3 x 60 ms more.
        assert_eq!(s.sampler(1, 0, base).next_delay(), Duration::from_millis(230));
        assert_eq!(s.sampler(0, 0, base).next_delay(), Duration::from_millis(50));
        // 4 workers, one 4x slower: (3/60 + 1/240) * 240 / 4 = 3.25.
        assert!((s.ideal_speedup(4, base) - 3.25).abs() < 1e-9);
    }

    #[test]
    fn exponential_delays_have_the_requested_mean_and_are_reproducible() {
        let s = DelaySpec::parse("all:exp=20ms").unwrap();
        let mut a = s.sampler(2, 7, Duration::ZERO);
        let draws: Vec<f64> = (0..20_000).map(|_| a.next_delay().as_secs_f64()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.020).abs() < 0.001, "{mean}");
        let mut b = s.sampler(2, 7, Duration::ZERO);
        assert_eq!(b.next_delay().as_secs_f64(), draws[0]);
        let mut c = s.sampler(3, 7, Duration::ZERO);
        assert_ne!(c.next_delay().as_secs_f64(), draws[0]);
    }
}
