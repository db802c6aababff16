//! The settings every rank of a job must share, compared once before training: a rank that
//! runs another algorithm, averaging period, model, batch, seed, dataset, optimiser or length
//! would otherwise train on (or hang, or finish alone) without a word.
//!
//! Each rank writes its settings as one canonical `key=value;...` string, gathers every
//! rank's as bytes (one `f32` each, exact for 0..=255) padded to [`MAX_BYTES`], and compares
//! each rank's with rank 0's, key by key.

use asgd_comm::Communicator;
use asgd_engine::data::Splits;
use asgd_engine::optim::OptimConfig;
use asgd_engine::EngineError;

use crate::algorithm::Algorithm;
use crate::error::TrainError;
use crate::run::RunSpec;

/// The longest settings string a rank may send, in bytes.
pub(crate) const MAX_BYTES: usize = 2048;

/// One rank's settings, in a fixed order (the first that differs is the one reported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings(Vec<(String, String)>);

impl Settings {
    fn push(&mut self, key: &str, value: impl ToString) {
        self.0.push((key.to_string(), value.to_string()));
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// What must agree across the ranks of a job running `spec` with a model of `params`
    /// parameters on `splits`.
    pub(crate) fn of(spec: &RunSpec, params: usize, splits: &Splits) -> Self {
        let mut s = Self::default();
        s.push("algo", spec.algorithm.name());
        match spec.algorithm {
            Algorithm::LocalSgd { period } => s.push("avg_period", period),
            Algorithm::Dasgd(a) | Algorithm::Lasgd { averaging: a, .. } => {
                s.push("avg_period", a.period);
                s.push("avg_delay", a.delay);
            }
            _ => {}
        }
        let cfg = &spec.config;
        s.push("model", &cfg.checkpoint_meta.model);
        s.push("params", params);
        s.push("data", &cfg.checkpoint_meta.data);
        s.push("train_samples", splits.train.len());
        s.push("batch", cfg.batch);
        s.push("seed", cfg.seed);
        s.push("optim", spec.optim.name());
        s.push("lr", spec.optim.lr());
        match spec.optim {
            OptimConfig::Sgd(h) => {
                s.push("momentum", h.momentum);
                s.push("nesterov", h.nesterov);
                s.push("weight_decay", h.weight_decay);
            }
            OptimConfig::Adam(h) => {
                s.push("betas", format!("{},{}", h.beta1, h.beta2));
                s.push("eps", h.eps);
                s.push("weight_decay", h.weight_decay);
            }
        }
        s.push("epochs", cfg.epochs);
        s.push("max_steps", cfg.max_steps.map_or_else(|| "none".to_string(), |n| n.to_string()));
        s.push("start_step", spec.start.step);
        s
    }

    /// The canonical `key=value;...` text (`%`, `;` and `=` in values escaped).
    fn encode(&self) -> String {
        let escape = |v: &str| v.replace('%', "%25").replace(';', "%3B").replace('=', "%3D").replace('\0', "%00");
        self.0.iter().map(|(k, v)| format!("{k}={};", escape(v))).collect()
    }

    fn decode(text: &str) -> Self {
        let unescape = |v: &str| v.replace("%3B", ";").replace("%3D", "=").replace("%00", "\0").replace("%25", "%");
        let pairs = text.split(';').filter(|p| !p.is_empty()).map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), unescape(v)),
            None => (p.to_string(), String::new()),
        });
        Self(pairs.collect())
    }

    /// The text as [`MAX_BYTES`] values, one byte each, padded with zeros.
    pub(crate) fn to_values(&self) -> Result<Vec<f32>, TrainError> {
        let text = self.encode();
        if text.len() > MAX_BYTES {
            return Err(EngineError::InvalidArgument(format!(
                "this run's settings take {} bytes to compare across ranks, more than the {MAX_BYTES} allowed \
                 (a shorter model description fits)",
                text.len()
            ))
            .into());
        }
        let mut values: Vec<f32> = text.bytes().map(f32::from).collect();
        values.resize(MAX_BYTES, 0.0);
        Ok(values)
    }

    /// One rank's [`MAX_BYTES`] values back into settings.
    fn from_values(values: &[f32]) -> Self {
        let bytes: Vec<u8> =
            values.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).take_while(|&b| b != 0).collect();
        Self::decode(&String::from_utf8_lossy(&bytes))
    }
}

/// The first setting (in rank 0's order) on which some rank differs from rank 0, naming the
/// lowest such rank; `Ok` when all agree.
pub(crate) fn compare(ranks: &[Settings]) -> Result<(), TrainError> {
    let Some((first, others)) = ranks.split_first() else { return Ok(()) };
    let none = "(none)";
    let differ = |setting: &str, rank: usize, value: Option<&str>, expected: Option<&str>| TrainError::SettingsDiffer {
        setting: setting.to_string(),
        rank,
        value: value.unwrap_or(none).to_string(),
        expected: expected.unwrap_or(none).to_string(),
    };
    for (key, expected) in &first.0 {
        for (i, s) in others.iter().enumerate() {
            let value = s.get(key);
            if value != Some(expected.as_str()) {
                return Err(differ(key, i + 1, value, Some(expected)));
            }
        }
    }
    // Settings rank 0 does not have at all.
    for (i, s) in others.iter().enumerate() {
        if let Some((key, value)) = s.0.iter().find(|(k, _)| first.get(k).is_none()) {
            return Err(differ(key, i + 1, Some(value), None));
        }
    }
    Ok(())
}

/// How `theirs` (rank `rank`'s settings, as [`Settings::to_values`] gives them) differ from
/// rank 0's `ours`: a [`TrainError::SettingsDiffer`].
pub(crate) fn differ(ours: &[f32], theirs: &[f32], rank: usize) -> TrainError {
    match compare(&[Settings::from_values(ours), Settings::from_values(theirs)]) {
        Err(TrainError::SettingsDiffer { setting, value, expected, .. }) => {
            TrainError::SettingsDiffer { setting, rank, value, expected }
        }
        // Equal once decoded: only their padding differed.
        _ => TrainError::SettingsDiffer {
            setting: "settings".into(),
            rank,
            value: "(other bytes)".into(),
            expected: "(rank 0's)".into(),
        },
    }
}

/// [`differ`]'s sentence, for rank 0's log of a rank it turned away.
pub(crate) fn describe(ours: &[f32], theirs: &[f32], rank: usize) -> String {
    differ(ours, theirs, rank).to_string()
}

/// Gathers every rank's `settings` through `comm` and fails, on every rank alike, when one
/// differs from rank 0's.
pub(crate) fn agree(comm: &Communicator, settings: &Settings) -> Result<(), TrainError> {
    let all = comm.all_gather(&settings.to_values()?)?;
    let ranks: Vec<Settings> = all.chunks(MAX_BYTES).map(Settings::from_values).collect();
    compare(&ranks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut s = Settings::default();
        for (k, v) in pairs {
            s.push(k, v);
        }
        s
    }

    fn base() -> Settings {
        settings(&[("algo", "localsgd"), ("avg_period", "8"), ("model", "mlp-64-32-10"), ("batch", "32")])
    }

    #[test]
    fn equal_settings_pass() {
        assert!(compare(&[base(), base(), base()]).is_ok());
        assert!(compare(&[base()]).is_ok());
        assert!(compare(&[]).is_ok());
    }

    #[test]
    fn a_mismatch_is_found_and_named_with_the_rank_and_both_values() {
        let mut dasgd = base();
        dasgd.0[0].1 = "dasgd".into();
        dasgd.0[1].1 = "4".into();
        // The first setting that differs is reported, for the lowest rank that differs.
        let e = compare(&[base(), base(), dasgd.clone(), dasgd]).unwrap_err();
        match &e {
            TrainError::SettingsDiffer { setting, rank, value, expected } => {
                assert_eq!(
                    (setting.as_str(), *rank, value.as_str(), expected.as_str()),
                    ("algo", 2, "dasgd", "localsgd")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "rank 2 runs with algo dasgd but rank 0 with localsgd; every rank of a job must use the same settings"
        );
        let mut batch = base();
        batch.0[3].1 = "64".into();
        let e = compare(&[base(), batch]).unwrap_err();
        assert!(matches!(&e, TrainError::SettingsDiffer { setting, rank: 1, .. } if setting == "batch"), "{e}");
    }

    #[test]
    fn a_setting_only_one_side_has_is_a_mismatch() {
        let mut fewer = base();
        fewer.0.remove(1);
        let e = compare(&[base(), fewer.clone()]).unwrap_err();
        assert!(
            matches!(&e, TrainError::SettingsDiffer { setting, value, .. } if setting == "avg_period" && value == "(none)")
        );
        let e = compare(&[fewer, base()]).unwrap_err();
        assert!(
            matches!(&e, TrainError::SettingsDiffer { setting, expected, .. } if setting == "avg_period" && expected == "(none)")
        );
    }

    #[test]
    fn padding_and_decoding_round_trip() {
        let odd = settings(&[("model", "a;b=c%3B d"), ("data", "dïgits"), ("empty", ""), ("nul", "x\0y")]);
        for s in [base(), odd, Settings::default()] {
            let values = s.to_values().unwrap();
            assert_eq!(values.len(), MAX_BYTES);
            assert!(values.iter().all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
            assert_eq!(Settings::from_values(&values), s);
        }
        // Two ranks' values gathered back to back split at the fixed length.
        let mut two = base().to_values().unwrap();
        two.extend(settings(&[("algo", "sync")]).to_values().unwrap());
        let back: Vec<Settings> = two.chunks(MAX_BYTES).map(Settings::from_values).collect();
        assert_eq!(back, [base(), settings(&[("algo", "sync")])]);
    }

    #[test]
    fn settings_too_long_to_send_are_refused() {
        let long = settings(&[("model", &"x".repeat(MAX_BYTES))]);
        let e = long.to_values().unwrap_err();
        assert!(e.to_string().contains("more than the 2048 allowed"), "{e}");
    }
}
