//! Staleness of asynchronous updates: how many updates of a layer's parameters were applied
//! between the forward pass that produced a gradient and the update made from it.

use serde_json::json;

/// A histogram of staleness values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Staleness {
    /// `counts[s]`: updates of staleness `s`.
    pub counts: Vec<u64>,
}

impl Staleness {
    pub fn add(&mut self, s: u64) {
        let s = s as usize;
        if self.counts.len() <= s {
            self.counts.resize(s + 1, 0);
        }
        self.counts[s] += 1;
    }

    pub fn merge(&mut self, other: &Staleness) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn mean(&self) -> f64 {
        let n = self.total();
        if n == 0 {
            return 0.0;
        }
        self.counts.iter().enumerate().map(|(s, &c)| s as f64 * c as f64).sum::<f64>() / n as f64
    }

    /// The smallest value with at least fraction `q` of updates at or below it.
    pub fn quantile(&self, q: f64) -> u64 {
        let n = self.total();
        let want = (q * n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (s, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return s as u64;
            }
        }
        0
    }

    pub fn max(&self) -> u64 {
        self.counts.iter().rposition(|&c| c > 0).unwrap_or(0) as u64
    }

    /// `{"updates", "mean", "p50", "p90", "p99", "max", "histogram"}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "updates": self.total(), "mean": self.mean(), "p50": self.quantile(0.5),
            "p90": self.quantile(0.9), "p99": self.quantile(0.99), "max": self.max(),
            "histogram": self.counts,
        })
    }
}
