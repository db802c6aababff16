//! `asgd bench async`: sync, hogwild and pdasgd on the same data, seed and delay spec; for
//! each the time to a target test accuracy, the final accuracy, samples/s and staleness; and
//! the speedup of each over sync beside the ideal one the delay model implies.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use asgd::engine::io::metrics::MetricsWriter;
use asgd::engine::train::{undelayed_step_time, Summary};
use asgd::{Algorithm, AlgorithmKind, Averaging, Job, OptimConfig, Position, Schedule, SgdParams, TrainConfig};

use super::common::{accuracy, positive, secs, DataArgs, DeviceArgs};
use super::optim::OptimArgs;
use super::train::{Algo, ModelArgs, WorkerArgs};

#[derive(clap::Args)]
pub struct BenchAsyncArgs {
    #[command(flatten)]
    pub arch: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub workers: WorkerArgs,
    /// Algorithms to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sync,hogwild,pdasgd")]
    pub algos: Vec<Algo>,
    /// Test accuracy to reach (0.97 or 97); each run stops there.
    #[arg(long, default_value = "97", value_parser = accuracy)]
    pub target_acc: f64,
    /// Epochs at most, if the target is never reached.
    #[arg(long, default_value = "3", value_parser = positive)]
    pub epochs: usize,
    /// Samples per step of each worker.
    #[arg(long, default_value = "32", value_parser = positive)]
    pub batch: usize,
    /// The optimiser of every run (`--lr` defaults to 0.05 for SGD, whose `--momentum`
    /// defaults to 0.5 for the asynchronous algorithms: asynchrony adds momentum of its own).
    #[command(flatten)]
    pub optim: OptimArgs,
    /// SGD momentum of the synchronous baseline.
    #[arg(long, default_value_t = 0.9)]
    pub sync_momentum: f32,
    /// Learning-rate schedule over --epochs: constant or cosine.
    #[arg(long, default_value = "constant", value_parser = |s: &str| Schedule::parse(s).map_err(|e| e.to_string()))]
    pub schedule: Schedule,
    /// Evaluate on the test set every this many batches.
    #[arg(long, default_value = "100", value_parser = positive)]
    pub eval_every: usize,
    /// Seed of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the metrics of each run (ALGO.jsonl).
    #[arg(long, default_value = "bench-async")]
    pub out: PathBuf,
    /// Also draw test accuracy against training time for all runs into this SVG, and against
    /// training samples into the same name with `-samples` added.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: BenchAsyncArgs) -> Result<ExitCode> {
    if !args.out.is_dir() {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| anyhow::anyhow!("cannot create the output folder {}: {e}", args.out.display()))?;
    }
    if !(0.0..1.0).contains(&args.sync_momentum) {
        bail!("--sync-momentum must be in [0, 1)");
    }
    let optim = args.optim.config(0.05, 0.5)?;
    // The synchronous baseline's SGD keeps its own momentum.
    let sync_optim = match optim {
        OptimConfig::Sgd(h) => OptimConfig::Sgd(SgdParams { momentum: args.sync_momentum, ..h }),
        other => other,
    };
    let model_cfg = args.arch.config()?;
    let splits = args.data.load()?;
    let delays = args.workers.delays(args.workers.workers)?;
    let dev = args.device.open()?;
    let n = args.workers.workers;

    // The undelayed step the delay model is relative to, on this device and batch.
    let probe = model_cfg.build(&dev, splits.train.shape, splits.train.classes, args.seed)?;
    let base = undelayed_step_time(&probe, &probe.plan(args.batch, true)?)?;
    let ideal = delays.ideal_speedup(n, base);
    let optim_text = match optim {
        OptimConfig::Sgd(h) => format!("sgd lr {}, momentum {} (sync {})", h.lr, h.momentum, args.sync_momentum),
        OptimConfig::Adam(h) => format!("{} lr {}", optim.name(), h.lr),
    };
    println!(
        "{} on {}, {n} workers ({} lanes), batch {}, {optim_text}, delays '{}', undelayed step {:.1} ms on {}",
        model_cfg.description(),
        args.data.data.name(),
        args.workers.lanes.0.name(),
        args.batch,
        delays.describe(),
        base.as_secs_f64() * 1e3,
        dev.info().name
    );

    let mut results: Vec<(AlgorithmKind, Summary, PathBuf)> = Vec::new();
    for &Algo(algo) in &args.algos {
        let run_optim = if algo == AlgorithmKind::Sync { sync_optim } else { optim };
        let cfg = TrainConfig {
            epochs: args.epochs,
            batch: args.batch,
            schedule: args.schedule,
            seed: args.seed,
            log_every: 50,
            eval_every: Some(args.eval_every as u64),
            eval_batch: 1000,
            target_acc: Some(args.target_acc),
            stop_at_target: true,
            ..TrainConfig::default()
        };
        let algorithm = Algorithm::new(algo, args.workers.async_settings(algo), Averaging::default());
        let spec = args.workers.spec(algorithm, run_optim, delays.clone(), cfg, Position::default());
        let replicas = spec.build_replicas(&dev, &model_cfg, &splits, args.seed)?;
        let name = algo.name();
        let path = args.out.join(format!("{name}.jsonl"));
        let mut metrics = MetricsWriter::create(&path)?;
        eprintln!("running {name} ...");
        let summary = asgd::run(&spec, &replicas, &splits, &Job::single(), &mut |e| {
            if let Some(json) = e.to_json() {
                let mut json = json;
                json["algo"] = serde_json::json!(name);
                metrics.write(&json)?;
            }
            Ok(())
        })?;
        results.push((algo, summary, path));
    }

    let target = 100.0 * args.target_acc;
    println!(
        "\n{:<8} {:>14} {:>10} {:>11} {:>9} {:>22}",
        "algo",
        format!("to {target:.1}%"),
        "final acc",
        "samples/s",
        "steps",
        "staleness mean/p90/max"
    );
    let sync_time = results.iter().find(|(a, ..)| *a == AlgorithmKind::Sync).and_then(|(_, s, _)| s.time_to_target_s);
    for (algo, s, _) in &results {
        let name = algo.name();
        let tt = s.time_to_target_s.map_or("not reached".to_string(), secs);
        let st = s
            .staleness
            .as_ref()
            .map_or("-".to_string(), |h| format!("{:.2}/{}/{}", h.mean(), h.quantile(0.9), h.max()));
        println!("{name:<8} {tt:>14} {:>9.2}% {:>11.0} {:>9} {st:>22}", 100.0 * s.test_acc, s.samples_per_s, s.steps);
        let used = if *algo == AlgorithmKind::Sync { sync_optim } else { optim };
        let speedup = match (sync_time, s.time_to_target_s) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        println!(
            "{}",
            serde_json::json!({"bench": "async", "algo": name, "workers": n, "lanes": args.workers.lanes.0.name(),
                "inject_delay": delays.describe(), "target_acc": args.target_acc, "time_to_target_s": s.time_to_target_s,
                "final_acc": s.test_acc, "samples_per_s": s.samples_per_s, "steps": s.steps,
                "optim": used.name(),
                "momentum": match used { OptimConfig::Sgd(h) => Some(h.momentum), OptimConfig::Adam(_) => None },
                "staleness": s.staleness.as_ref().map(|h| h.to_json()), "speedup_vs_sync": speedup,
                "ideal_speedup": ideal, "base_step_ms": base.as_secs_f64() * 1e3, "device": dev.info().name})
        );
    }
    if let Some(sync) = sync_time {
        for (algo, s, _) in results.iter().filter(|(a, ..)| *a != AlgorithmKind::Sync) {
            if let Some(t) = s.time_to_target_s {
                println!(
                    "{algo} reached {target:.1}% {:.2}x sooner than sync (ideal from the delay model: {ideal:.2}x)",
                    sync / t
                );
            }
        }
    }
    // Accuracy at equal training time: the latest evaluation of each run at or before the
    // time the shortest run ended.
    let curves: Vec<(AlgorithmKind, Vec<(f64, f64)>)> =
        results.iter().map(|(a, _, p)| Ok((*a, eval_curve(p)?))).collect::<Result<_>>()?;
    let horizon = curves.iter().filter_map(|(_, c)| c.last().map(|p| p.0)).fold(f64::INFINITY, f64::min);
    if horizon.is_finite() {
        let at: Vec<String> = curves
            .iter()
            .map(|(a, c)| match c.iter().take_while(|p| p.0 <= horizon).last() {
                Some(p) => format!("{a} {:.2}%", 100.0 * p.1),
                None => format!("{a} (no evaluation yet)"),
            })
            .collect();
        println!("test accuracy at {} of training (the shortest run): {}", secs(horizon), at.join(", "));
    }
    if let Some(plot) = &args.plot {
        let files: Vec<PathBuf> = results.iter().map(|(.., p)| p.clone()).collect();
        let title = format!(
            "{} on {}, {n} workers, delays '{}'",
            model_cfg.description(),
            args.data.data.name(),
            delays.describe()
        );
        super::plot::draw(&files, plot, super::plot::XAxis::Train, &title)?;
        let stem = plot.file_stem().map_or("plot".into(), |s| s.to_string_lossy().into_owned());
        let by_samples = plot.with_file_name(format!("{stem}-samples.svg"));
        super::plot::draw(&files, &by_samples, super::plot::XAxis::Samples, &title)?;
        println!("plots: {} and {}", plot.display(), by_samples.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `(train_s, test_acc)` of every evaluation in a metrics file.
fn eval_curve(path: &std::path::Path) -> Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "eval")
        .filter_map(|v| Some((v["train_s"].as_f64()?, v["test_acc"].as_f64()?)))
        .collect())
}
