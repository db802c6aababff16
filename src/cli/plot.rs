//! `asgd plot`: test accuracy against time, steps or samples for several metrics files, one
//! line each, in one SVG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

/// What the horizontal axis shows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    /// Training time in seconds (evaluations excluded).
    Train,
    /// Wall-clock time in seconds.
    Wall,
    /// Training steps.
    Step,
    /// Training samples of the whole job (every process's).
    Samples,
}

#[derive(clap::Args)]
pub struct PlotArgs {
    /// Metrics files (JSON Lines from --metrics or bench async); each is one line in the plot.
    #[arg(required = true)]
    pub metrics: Vec<PathBuf>,
    /// Output SVG file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Horizontal axis.
    #[arg(long, value_enum, default_value = "train")]
    pub x: XAxis,
    /// Title above the plot (for example the delay model) [default: test accuracy].
    #[arg(long)]
    pub title: Option<String>,
}

pub fn run(args: PlotArgs) -> Result<ExitCode> {
    draw(&args.metrics, &args.out, args.x, args.title.as_deref().unwrap_or("test accuracy"))?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `(x, test accuracy in %)` of every `eval` event in a metrics file. A resumed run appends
/// a `start` event at the step it resumed from: the earlier process's evaluations past that
/// step are superseded (that part of the run was trained again) and left out.
fn series(path: &Path, x: XAxis) -> Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // (step, x, accuracy)
    let mut points: Vec<(f64, f64, f64)> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        if v["event"] == "start" {
            if let Some(start) = v["start_step"].as_f64() {
                points.retain(|&(step, _, _)| step <= start);
            }
            continue;
        }
        if v["event"] != "eval" {
            continue;
        }
        let key = match x {
            XAxis::Train => "train_s",
            XAxis::Wall => "wall_s",
            XAxis::Step => "step",
            XAxis::Samples => "samples",
        };
        if let (Some(xv), Some(acc)) = (v[key].as_f64(), v["test_acc"].as_f64()) {
            points.push((v["step"].as_f64().unwrap_or(0.0), xv, 100.0 * acc));
        }
    }
    if points.is_empty() {
        let what = if x == XAxis::Samples { " and samples (older files have none; try --x step)" } else { "" };
        bail!(
            "{} has no eval events with test accuracy{what}; was it written by asgd train --metrics?",
            path.display()
        );
    }
    Ok(points.into_iter().map(|(_, x, acc)| (x, acc)).collect())
}

/// Draws every file's test accuracy against `x` into an SVG at `out`, under `title`.
pub fn draw(files: &[PathBuf], out: &Path, x: XAxis, title: &str) -> Result<()> {
    let all: Vec<(String, Vec<(f64, f64)>)> = files
        .iter()
        .map(|f| Ok((f.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned()), series(f, x)?)))
        .collect::<Result<_>>()?;
    let x_max = all.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(0.0, f64::max).max(1e-9);
    let y_min = all.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(100.0, f64::min).clamp(0.0, 99.0);
    let root = SVGBackend::new(out, (900, 560)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let x_label = match x {
        XAxis::Train => "training time (s)",
        XAxis::Wall => "wall-clock time (s)",
        XAxis::Step => "step",
        XAxis::Samples => "training samples",
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max * 1.02, y_min.floor()..100.0)
        .map_err(|e| fail(&e))?;
    chart.configure_mesh().x_desc(x_label).y_desc("test accuracy (%)").draw().map_err(|e| fail(&e))?;
    // ColorBrewer's Set1 without its yellow, which is unreadable on white.
    const COLORS: [(u8, u8, u8); 7] =
        [(228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40), (0, 0, 0)];
    for (i, (name, points)) in all.iter().enumerate() {
        let (r, g, b) = COLORS[i % COLORS.len()];
        let color = RGBColor(r, g, b).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run stopped after step 30, resumed from its checkpoint of step 20: the first process's
    /// evaluation of step 30 is superseded by the second's.
    #[test]
    fn a_resumed_run_supersedes_the_steps_it_trains_again() {
        let path = std::env::temp_dir().join(format!("asgd-plot-resumed-{}.jsonl", std::process::id()));
        let lines = [
            r#"{"event":"start","wall_s":0.0,"start_step":0}"#,
            r#"{"event":"eval","step":10,"samples":640,"test_acc":0.5,"wall_s":1.0,"train_s":0.9}"#,
            r#"{"event":"eval","step":20,"samples":1280,"test_acc":0.6,"wall_s":2.0,"train_s":1.8}"#,
            r#"{"event":"eval","step":30,"samples":1920,"test_acc":0.1,"wall_s":3.0,"train_s":2.7}"#,
            r#"{"event":"start","wall_s":2.1,"start_step":20}"#,
            r#"{"event":"eval","step":30,"samples":1920,"test_acc":0.7,"wall_s":3.2,"train_s":2.8}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let got = series(&path, XAxis::Step);
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.unwrap(), vec![(10.0, 50.0), (20.0, 60.0), (30.0, 70.0)]);
    }
}
