//! The optimiser flags of `asgd train`: `--optim`, `--lr`, `--momentum`, `--nesterov`,
//! `--betas`, `--eps`, `--weight-decay`, with PyTorch's defaults for what is not given.

use anyhow::{bail, Result};
use asgd::engine::ops::adam::AdamParams;
use asgd::engine::optim::OptimConfig;
use asgd::SgdParams;

/// Which optimiser.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimKind {
    /// SGD with momentum (`torch.optim.SGD`).
    Sgd,
    /// Adam (`torch.optim.Adam`): weight decay added to the gradient.
    Adam,
    /// AdamW (`torch.optim.AdamW`): weight decay decoupled from the gradient.
    Adamw,
}

#[derive(clap::Args, Clone, Debug)]
pub struct OptimArgs {
    /// Optimiser.
    #[arg(long, value_enum, default_value = "sgd")]
    pub optim: OptimKind,
    /// Learning rate, the base of the schedule [default: sgd 0.05, with pdasgd and hogwild
    /// 0.02 for lenet and the ResNets; adam and adamw 0.001].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// SGD momentum [default: the algorithm's, see --algo].
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Nesterov momentum (sgd).
    #[arg(long)]
    pub nesterov: bool,
    /// Adam's (beta1, beta2), comma-separated [default: 0.9,0.999].
    #[arg(long, value_parser = betas)]
    pub betas: Option<(f32, f32)>,
    /// Adam's epsilon [default: 1e-8].
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f32>,
    /// Weight decay: L2 added to the gradient (sgd, adam) or decoupled (adamw)
    /// [default: 0, adamw 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
}

fn betas(s: &str) -> Result<(f32, f32), String> {
    let parsed: Option<Vec<f32>> = s.split(',').map(|v| v.trim().parse().ok()).collect();
    match parsed.as_deref() {
        Some(&[b1, b2]) if (0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2) => Ok((b1, b2)),
        _ => Err(format!("'{s}' is not two betas in [0, 1) such as 0.9,0.999")),
    }
}

impl OptimArgs {
    /// The optimiser these flags ask for; `default_sgd_lr` and `default_momentum` are SGD's
    /// when --lr and --momentum are not given (the algorithm's).
    pub fn config(&self, default_sgd_lr: f32, default_momentum: f32) -> Result<OptimConfig> {
        let (sgd_only, adam_only) =
            (self.momentum.is_some() || self.nesterov, self.betas.is_some() || self.eps.is_some());
        let name = match self.optim {
            OptimKind::Sgd => "sgd",
            OptimKind::Adam => "adam",
            OptimKind::Adamw => "adamw",
        };
        if self.optim == OptimKind::Sgd && adam_only {
            bail!("--betas and --eps set Adam's moments; add --optim adam or adamw, or leave them out");
        }
        if self.optim != OptimKind::Sgd && sgd_only {
            bail!("--momentum and --nesterov are SGD's; --optim {name} uses --betas instead");
        }
        let lr = self.lr.unwrap_or(if self.optim == OptimKind::Sgd { default_sgd_lr } else { 1e-3 });
        if !lr.is_finite() || lr <= 0.0 {
            bail!("--lr {lr} must be a positive number");
        }
        let weight_decay = self.weight_decay.unwrap_or(if self.optim == OptimKind::Adamw { 1e-2 } else { 0.0 });
        if !weight_decay.is_finite() || weight_decay < 0.0 {
            bail!("--weight-decay {weight_decay} must be zero or positive");
        }
        Ok(match self.optim {
            OptimKind::Sgd => {
                let momentum = self.momentum.unwrap_or(default_momentum);
                if !(0.0..1.0).contains(&momentum) {
                    bail!("--momentum {momentum} must be in [0, 1)");
                }
                if self.nesterov && momentum == 0.0 {
                    bail!("--nesterov needs a momentum above 0");
                }
                OptimConfig::Sgd(SgdParams { lr, momentum, weight_decay, nesterov: self.nesterov })
            }
            OptimKind::Adam | OptimKind::Adamw => {
                let base = if self.optim == OptimKind::Adam { AdamParams::adam() } else { AdamParams::adamw() };
                let (beta1, beta2) = self.betas.unwrap_or((base.beta1, base.beta2));
                let eps = self.eps.unwrap_or(base.eps);
                if !eps.is_finite() || eps <= 0.0 {
                    bail!("--eps {eps} must be a positive number");
                }
                OptimConfig::Adam(AdamParams { lr, beta1, beta2, eps, weight_decay, ..base })
            }
        })
    }
}
