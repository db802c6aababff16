//! `asgd bench async` with a residual network and Adam: every run writes its metrics, each
//! evaluation carries the samples trained so far, and the two plots (against time and against
//! samples) are drawn with the delay model in their title; `asgd plot --x samples` overlays
//! the same files.

mod common;

use common::{asgd, assert_success, fresh_dir};

#[test]
fn bench_async_runs_any_model_and_optimiser_and_plots_by_time_and_samples() {
    let d = fresh_dir("bench_async", "resnet_adam");
    let out = d.join("runs");
    let plot = d.join("acc.svg");
    let stdout = assert_success(&asgd(&[
        "bench",
        "async",
        "--model",
        "resnet8",
        "--optim",
        "adam",
        "--algos",
        "sync,pdasgd",
        "--workers",
        "2",
        "--inject-delay",
        "worker=1:factor=2",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--eval-every",
        "10",
        "--target-acc",
        "99.9",
        "--out",
        out.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]));
    let lines: Vec<serde_json::Value> =
        stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for l in &lines {
        assert_eq!(l["optim"], "adam", "{l}");
        assert!(l["momentum"].is_null(), "{l}");
        assert!(l["final_acc"].as_f64().unwrap() > 0.3, "{l}");
    }
    for algo in ["sync", "pdasgd"] {
        let text = std::fs::read_to_string(out.join(format!("{algo}.jsonl"))).unwrap();
        let evals: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "eval")
            .collect();
        assert!(evals.len() >= 2, "{algo}: {text}");
        for e in &evals {
            // One process: the samples are the steps times the batch.
            assert_eq!(e["samples"].as_u64(), e["step"].as_u64().map(|s| s * 32), "{algo}: {e}");
        }
    }
    let by_samples = d.join("acc-samples.svg");
    for svg in [&plot, &by_samples] {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(text.contains("worker=1:factor=2"), "{}: the delay model is not in the title", svg.display());
        assert!(text.contains("pdasgd") && text.contains("sync"), "{}", svg.display());
    }
    assert!(std::fs::read_to_string(&by_samples).unwrap().contains("training samples"));
    let again = d.join("again.svg");
    let files = [out.join("sync.jsonl"), out.join("pdasgd.jsonl")];
    assert_success(&asgd(&[
        "plot",
        files[0].to_str().unwrap(),
        files[1].to_str().unwrap(),
        "--x",
        "samples",
        "--title",
        "two runs",
        "-o",
        again.to_str().unwrap(),
    ]));
    assert!(std::fs::read_to_string(&again).unwrap().contains("two runs"));
}
