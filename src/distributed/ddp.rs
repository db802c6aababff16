//! Synchronous data parallelism across processes, as PyTorch's DDP: every step, every process
//! computes the gradients of its own batch and the gradients are averaged by all-reduce before
//! the same update is applied everywhere, so all processes hold the same model.
//!
//! The all-reduce overlaps the backward pass: each layer's backward is submitted on its own
//! with a copy of its gradients to the host, and the average of the last layer starts while
//! the GPU still differentiates the layers below.
//!
//! Running statistics (batch norm's), which each process updates from its own batch, travel
//! with the last layer's gradients and are averaged every step too, so that all processes
//! hold the same model, buffers included. PyTorch's DDP broadcasts rank 0's buffers instead;
//! the average costs the same message and keeps every process's batches in the statistics.

use std::time::Instant;

use asgd_comm::Communicator;
use asgd_engine::layers::BufferKind;
use asgd_engine::train::{PlainStep, StepAlgorithm, StepContext};
use asgd_engine::{ReadBack, Result, Tensor};

use super::comm_err;

/// Gradient all-reduce every step.
pub struct DdpStep<'c> {
    comm: &'c Communicator,
    /// Time spent waiting for averaged gradients (not hidden behind the backward pass).
    wait_s: f64,
    steps: u64,
}

impl<'c> DdpStep<'c> {
    pub fn new(comm: &'c Communicator) -> Self {
        Self { comm, wait_s: 0.0, steps: 0 }
    }
}

impl StepAlgorithm for DdpStep<'_> {
    fn step(&mut self, ctx: &StepContext) -> Result<()> {
        if self.comm.world_size() == 1 {
            return PlainStep.step(ctx);
        }
        let dev = ctx.model.device();
        let groups = ctx.model.param_groups();
        let buffers = ctx.model.buffers();
        let stats: Vec<&Tensor> =
            buffers.iter().filter(|(_, _, k)| *k == BufferKind::Statistic).map(|(_, t, _)| *t).collect();
        let mut reads = Vec::new();
        for (g, (p, layers)) in groups.iter().enumerate() {
            let mut enc = dev.wgpu().create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                if g == 0 {
                    ctx.plan.record_forward(&mut pass);
                    ctx.plan.record_loss(&mut pass);
                }
                for &l in layers {
                    ctx.plan.record_backward(l, &mut pass);
                }
            }
            let mut grads: Vec<&Tensor> = ctx.plan.grads[*p].iter().collect();
            if g == 0 {
                // Written by the forward pass, which this submission holds.
                grads.extend(&stats);
            }
            let mut rb = ReadBack::record(dev, &mut enc, &grads);
            rb.submitted(dev.submit([enc.finish()]));
            reads.push((*p, rb));
        }
        // Start each layer's average as soon as its gradients are on the host, last layer
        // first, while the GPU works on the layers below.
        let mut pending = Vec::new();
        for (p, rb) in reads {
            pending.push((p, self.comm.start_average(rb.wait(dev)?)));
        }
        let t0 = Instant::now();
        for (g, (p, handle)) in pending.into_iter().enumerate() {
            let avg = handle.wait().map_err(comm_err)?;
            let mut offset = 0;
            let extra = if g == 0 { &stats[..] } else { &[] };
            for t in ctx.plan.grads[p].iter().chain(extra.iter().copied()) {
                t.write_f32(&avg[offset..offset + t.numel()])?;
                offset += t.numel();
            }
        }
        self.wait_s += t0.elapsed().as_secs_f64();
        let mut enc = dev.wgpu().create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for (p, _) in &groups {
                ctx.updates.record(*p, &mut pass);
            }
        }
        dev.submit([enc.finish()]);
        self.steps += 1;
        Ok(())
    }

    fn report(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"allreduce": {"steps": self.steps, "wait_s": self.wait_s}}))
    }
}
