//! PD-ASGD (partial decoupled ASGD, arXiv 2410.05985) and its ablation, Hogwild-style ASGD
//! with whole-model updates.
//!
//! Each replica (worker) has F forward threads and B backward threads, each a lane: a thread
//! with its own stream of GPU submissions. A forward thread takes the next batch, takes a free
//! plan (activation and gradient buffers), records forward and loss with whatever parameters
//! are current, and queues the plan on a bounded channel. A backward thread takes a queued
//! plan and walks the layers from last to first; with [`Decoupling::LayerWise`] it submits
//! each parameter layer's backward and update together, so the layer's new parameters are in
//! the queue before the layer below is even differentiated, and forward threads read fresher
//! parameters. [`Decoupling::WholeModel`] submits the full backward, then every update.
//!
//! With several replicas, each has its own parameters and momentum. An update made by one is
//! sent to the others as a delta (`-lr * v`, the change it made) over a flume channel and
//! added there by whichever of their threads next drains its inbox: no barrier anywhere. On a
//! shared device the delta stays on the GPU; across devices it goes through the host.
//!
//! Staleness: every replica counts the updates applied to each layer (its own and received);
//! the staleness of an update is how many were applied between the forward pass that produced
//! its gradient and the update itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::books::{report_done, save_at, Books};
use super::coordinator::{coordinate, Hooks, Shared};
use super::delay::{DelaySampler, DelaySpec};
use super::feed::Feed;
use super::staleness::Staleness;
use super::{Elapsed, Evaluator, Observer, Position, Summary, TrainConfig, UpdateCounts};
use crate::data::Splits;
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::Dispatch;
use crate::model::Model;
use crate::ops::elementwise::{scale_add, set_scale_add};
use crate::optim::{Optimizer, Updates};
use crate::plan::Plan;
use crate::tensor::Tensor;

/// When a backward thread applies updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoupling {
    /// PD-ASGD: each layer's update right after its backward, last layer first.
    LayerWise,
    /// Hogwild-style ASGD: one whole-model update after the full backward pass.
    WholeModel,
}

/// Most batches that may wait between a replica's forward and backward threads: each one
/// holds a whole set of activations on the device, so a deeper queue costs memory (and adds
/// staleness) long before it could help.
pub const MAX_QUEUE: usize = 64;

/// Threads and queueing of the decoupled algorithms. The default is one forward and two
/// backward threads (a backward costs about two forwards) with one batch queued between them:
/// staleness costs accuracy, and with a queue of 2 PD-ASGD diverged on the MNIST MLP, while with
/// a queue of 1 it trained (to 95.44% in 2 epochs; 95.33% with one backward thread).
#[derive(Clone, Debug)]
pub struct AsyncConfig {
    pub decoupling: Decoupling,
    /// Forward threads per replica.
    pub fwd_threads: usize,
    /// Backward threads per replica (a backward costs about twice a forward).
    pub bwd_threads: usize,
    /// Batches that may wait between the forward and backward threads of a replica. With 0 a
    /// forward thread hands its batch straight to a backward thread, waiting until one is free;
    /// with one thread of each, one forward overlaps one backward and a replica's own updates
    /// are at most 1 stale.
    pub queue: usize,
    /// Emulated slow devices.
    pub delays: DelaySpec,
    /// How an update's staleness scales its learning rate.
    pub stale_lr: StaleLr,
    /// Which parameter values the forward and backward passes read.
    pub weights: Weights,
}

/// The parameter values a batch's forward and backward passes read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// The live parameters, whatever updates landed in between (PD-ASGD as published): the
    /// backward pass can differentiate through newer weights than its forward pass used.
    #[default]
    Live,
    /// The forward pass copies the parameters it uses and the backward pass reads the copy
    /// (PipeDream's weight stashing): every gradient is the exact gradient at a past point.
    Stash,
    /// As `Stash`, but the copy is moved to where the parameters are expected to be when the
    /// update lands: `w - s * lr * v`, `s` the mean staleness of the layer's updates so far
    /// in this replica, `v` the momentum buffer (SpecTrain's weight prediction).
    Predict,
}

impl Weights {
    /// Parses `live`, `stash` or `predict`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "live" => Ok(Self::Live),
            "stash" => Ok(Self::Stash),
            "predict" => Ok(Self::Predict),
            other => {
                Err(EngineError::InvalidArgument(format!("unknown weights mode '{other}'; use live, stash or predict")))
            }
        }
    }
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            decoupling: Decoupling::LayerWise,
            fwd_threads: 1,
            bwd_threads: 2,
            queue: 1,
            delays: DelaySpec::default(),
            stale_lr: StaleLr::default(),
            weights: Weights::default(),
        }
    }
}

/// How the learning rate of an update depends on its staleness `s` (updates of the layer
/// between the forward pass that produced the gradient and the update).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StaleLr {
    /// The scheduled rate whatever the staleness.
    #[default]
    Constant,
    /// `lr / max(1, s)` (staleness-aware ASGD, Zhang et al., IJCAI 2016): a fresh gradient or
    /// one a single update old gets the full rate, older ones proportionally less.
    Inverse,
}

impl StaleLr {
    /// Parses `constant` or `inverse`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Self::Constant),
            "inverse" => Ok(Self::Inverse),
            other => Err(EngineError::InvalidArgument(format!(
                "unknown staleness learning-rate rule '{other}'; use constant or inverse"
            ))),
        }
    }

    /// The rate of an update of staleness `s` whose scheduled rate is `lr`.
    pub fn lr(self, lr: f32, s: u64) -> f32 {
        match self {
            Self::Constant => lr,
            Self::Inverse => lr / s.max(1) as f32,
        }
    }
}

/// A batch between its forward and its backward pass.
struct Item {
    slot: usize,
    step: u64,
    /// Per-layer update counts when the forward pass was submitted.
    versions: Vec<u64>,
}

enum DeltaValues {
    Gpu(Tensor),
    Host(Arc<[f32]>),
}

/// An update made by replica `from` to layer `layer`: add `-lr * values[j]` to parameter `j`.
struct Delta {
    from: usize,
    layer: usize,
    lr: f32,
    values: Vec<DeltaValues>,
}

struct Slot {
    plan: Plan,
    updates: Updates,
    /// With [`Weights::Stash`] or [`Weights::Predict`], the copy of the parameters `plan` reads.
    stash: Option<Stash>,
}

/// A slot's copy of the parameters, refreshed by each forward pass.
struct Stash {
    /// `(layer, live, copy)` per parameter, layer by layer.
    pairs: Vec<(usize, Tensor, Tensor)>,
    /// With [`Weights::Predict`], `copy += alpha * velocity` per parameter.
    predict: Vec<Dispatch>,
}

struct State {
    /// Updates applied to each layer.
    versions: Vec<u64>,
    /// Staleness of this replica's own updates, per layer.
    staleness: Vec<Staleness>,
}

/// One replica's runtime.
struct Replica<'m> {
    index: usize,
    model: &'m Model,
    optim: &'m dyn Optimizer,
    slots: Vec<Slot>,
    free: (flume::Sender<usize>, flume::Receiver<usize>),
    inbox: (flume::Sender<Delta>, flume::Receiver<Delta>),
    /// Held while submitting, so that version counts follow submission order exactly.
    state: Mutex<State>,
    delays: Mutex<DelaySampler>,
    local_updates: AtomicU64,
    /// `sent[to]`, `applied_from[from]`: deltas exchanged with each other replica.
    sent: Vec<AtomicU64>,
    applied_from: Vec<AtomicU64>,
}

impl<'m> Replica<'m> {
    fn dev(&self) -> &Device {
        self.model.device()
    }

    /// Applies every delta waiting in the inbox in one submission.
    fn drain_inbox(&self, shared: &Shared) -> Result<()> {
        let msgs: Vec<Delta> = self.inbox.1.try_iter().collect();
        if msgs.is_empty() {
            return Ok(());
        }
        let _gate = shared.gate.read().expect("gate poisoned");
        let mut st = self.state.lock().expect("state poisoned");
        let mut dispatches: Vec<Dispatch> = Vec::new();
        for d in &msgs {
            for (p, values) in self.model.layers()[d.layer].params().iter().zip(&d.values) {
                let delta = match values {
                    DeltaValues::Gpu(t) => t.clone(),
                    DeltaValues::Host(v) => Tensor::from_f32(self.dev(), p.value.shape(), v)?,
                };
                dispatches.push(scale_add(self.dev(), &p.value, &delta, -d.lr, 1.0)?);
            }
        }
        let refs: Vec<&Dispatch> = dispatches.iter().collect();
        crate::kernel::run_all(self.dev(), &refs);
        for d in &msgs {
            st.versions[d.layer] += 1;
            self.applied_from[d.from].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Takes a free plan, waiting while all are busy; `None` once the run is stopping.
    fn take_slot(&self, shared: &Shared) -> Option<usize> {
        loop {
            match self.free.1.recv_timeout(Duration::from_millis(5)) {
                Ok(s) => return Some(s),
                Err(flume::RecvTimeoutError::Timeout) if !shared.feed.stopped() => continue,
                Err(_) => return None,
            }
        }
    }

    fn forward_thread(
        &self,
        shared: &Shared,
        queue: flume::Sender<Item>,
        cfg: &TrainConfig,
        horizon: u64,
    ) -> Result<()> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        loop {
            self.drain_inbox(shared)?;
            let Some(slot) = self.take_slot(shared) else { return Ok(()) };
            let Some(step) = shared.feed.take(&mut images, &mut labels) else {
                let _ = self.free.0.send(slot);
                return Ok(());
            };
            // A slow worker is slow as a whole: its forward threads take turns sleeping.
            self.delays.lock().expect("delay lock poisoned").sleep();
            let Slot { plan, stash, .. } = &self.slots[slot];
            plan.upload(&images, &labels)?;
            let versions = {
                let _gate = shared.gate.read().expect("gate poisoned");
                let st = self.state.lock().expect("state poisoned");
                let mut enc = self.dev().wgpu().create_command_encoder(&Default::default());
                if let Some(stash) = stash {
                    for (_, live, copy) in &stash.pairs {
                        enc.copy_buffer_to_buffer(live.buffer(), 0, copy.buffer(), 0, (live.numel() * 4) as u64);
                    }
                    // Per layer: with layer-wise updates the last layer's update is often
                    // already in the queue when the next forward pass starts, the first's not.
                    let lr = cfg.lr_at(step, horizon);
                    for (d, (layer, live, _)) in stash.predict.iter().zip(&stash.pairs) {
                        let alpha = -(st.staleness[*layer].mean() as f32) * lr;
                        set_scale_add(self.dev(), d, live.numel(), alpha, 1.0)?;
                    }
                }
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    if let Some(stash) = stash {
                        for d in &stash.predict {
                            d.record(&mut pass);
                        }
                    }
                    plan.record_forward(&mut pass);
                    plan.record_loss(&mut pass);
                }
                self.dev().submit([enc.finish()]);
                st.versions.clone()
            };
            if queue.send(Item { slot, step, versions }).is_err() {
                return Ok(());
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_thread(
        &self,
        shared: &Shared,
        queue: flume::Receiver<Item>,
        peers: &[Replica],
        groups: &[(usize, Vec<usize>)],
        acfg: &AsyncConfig,
        cfg: &TrainConfig,
        horizon: u64,
    ) -> Result<()> {
        while let Ok(item) = queue.recv() {
            self.drain_inbox(shared)?;
            let slot = &self.slots[item.slot];
            let lr = cfg.lr_at(item.step, horizon);
            match acfg.decoupling {
                Decoupling::LayerWise => {
                    for (p, layers) in groups {
                        let deltas = self.submit_update(shared, slot, &item, layers, &[*p], lr, acfg.stale_lr)?;
                        self.send_deltas(peers, deltas)?;
                    }
                }
                Decoupling::WholeModel => {
                    let all: Vec<usize> = groups.iter().flat_map(|(_, l)| l.iter().copied()).collect();
                    let params: Vec<usize> = groups.iter().map(|(p, _)| *p).collect();
                    let deltas = self.submit_update(shared, slot, &item, &all, &params, lr, acfg.stale_lr)?;
                    self.send_deltas(peers, deltas)?;
                }
            }
            let _ = self.free.0.send(item.slot);
            shared.done.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Submits the backward of `layers` (in order) and then the updates of `params` in one
    /// encoder, each at rate `lr` scaled by `stale_lr` for its staleness; returns, per updated
    /// layer, what to send to the peers (none without peers): `(layer, rate, d)` such that the
    /// update changed parameter `j` by exactly `-rate * d[j]`. That is the optimiser's
    /// direction when its change is exactly that (SGD), else the difference the update made,
    /// taken on the GPU (rate -1).
    #[allow(clippy::too_many_arguments)]
    fn submit_update(
        &self,
        shared: &Shared,
        slot: &Slot,
        item: &Item,
        layers: &[usize],
        params: &[usize],
        lr: f32,
        stale_lr: StaleLr,
    ) -> Result<Vec<(usize, f32, Vec<Tensor>)>> {
        let peers = self.sent.len() > 1;
        let _gate = shared.gate.read().expect("gate poisoned");
        let mut st = self.state.lock().expect("state poisoned");
        let dev = self.dev();
        let stale: Vec<u64> = params.iter().map(|&p| st.versions[p] - item.versions[p]).collect();
        let mut rates = Vec::with_capacity(params.len());
        for (&p, &s) in params.iter().zip(&stale) {
            let lr = stale_lr.lr(lr, s);
            slot.updates.set_layer_lr(p, lr);
            rates.push(lr);
        }
        let copy = |enc: &mut wgpu::CommandEncoder, v: &Tensor| {
            let t = Tensor::empty_like(v);
            enc.copy_buffer_to_buffer(v.buffer(), 0, t.buffer(), 0, (v.numel() * 4) as u64);
            t
        };
        let mut enc = dev.wgpu().create_command_encoder(&Default::default());
        let mut deltas = Vec::new();
        if peers && !self.optim.change_is_direction() {
            // The peers get the difference the update made: copy the values between the
            // backward pass and the update, then turn the copies into after - before.
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                layers.iter().for_each(|&l| slot.plan.record_backward(l, &mut pass));
            }
            let before: Vec<Vec<Tensor>> = params
                .iter()
                .map(|&p| self.model.layers()[p].params().iter().map(|w| copy(&mut enc, &w.value)).collect())
                .collect();
            let mut differences = Vec::new();
            for (&p, olds) in params.iter().zip(&before) {
                for (w, old) in self.model.layers()[p].params().iter().zip(olds) {
                    differences.push(scale_add(dev, old, &w.value, 1.0, -1.0)?);
                }
            }
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                params.iter().for_each(|&p| slot.updates.record(p, &mut pass));
                differences.iter().for_each(|d| d.record(&mut pass));
            }
            deltas.extend(params.iter().zip(before).map(|(&p, olds)| (p, -1.0, olds)));
        } else {
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                layers.iter().for_each(|&l| slot.plan.record_backward(l, &mut pass));
                params.iter().for_each(|&p| slot.updates.record(p, &mut pass));
            }
            if peers {
                for (&p, &lr) in params.iter().zip(&rates) {
                    let copies = self.optim.direction(p).iter().map(|v| copy(&mut enc, v)).collect();
                    deltas.push((p, lr, copies));
                }
            }
        }
        dev.submit([enc.finish()]);
        for (&p, &s) in params.iter().zip(&stale) {
            st.staleness[p].add(s);
            st.versions[p] += 1;
            self.local_updates.fetch_add(1, Ordering::Relaxed);
        }
        Ok(deltas)
    }

    /// Sends each updated layer's delta to every other replica: as the GPU copy when the peer
    /// shares this device, else read back once and shared by all host-side peers.
    fn send_deltas(&self, peers: &[Replica], deltas: Vec<(usize, f32, Vec<Tensor>)>) -> Result<()> {
        for (layer, lr, copies) in deltas {
            let mut host: Option<Vec<Arc<[f32]>>> = None;
            for peer in peers.iter().filter(|p| p.index != self.index) {
                let values = if peer.dev().same_as(self.dev()) {
                    copies.iter().map(|t| DeltaValues::Gpu(t.clone())).collect()
                } else {
                    if host.is_none() {
                        let read: Result<Vec<Arc<[f32]>>> = copies.iter().map(|t| Ok(t.to_vec_f32()?.into())).collect();
                        host = Some(read?);
                    }
                    host.as_ref().expect("read above").iter().map(|v| DeltaValues::Host(v.clone())).collect()
                };
                self.sent[peer.index].fetch_add(1, Ordering::Relaxed);
                // The peer's inbox lives as long as the run; a send cannot fail before then.
                let _ = peer.inbox.0.send(Delta { from: self.index, layer, lr, values });
            }
        }
        Ok(())
    }
}

/// Trains `replicas` (models built alike, each with its optimiser) asynchronously.
pub fn train_decoupled(
    replicas: &[(&Model, &dyn Optimizer)],
    data: &Splits,
    cfg: &TrainConfig,
    acfg: &AsyncConfig,
    start: Position,
    obs: &mut Observer,
) -> Result<Summary> {
    train_decoupled_with(replicas, data, cfg, acfg, start, None, obs)
}

/// [`train_decoupled`] with side work driven by the coordinator (LASGD's periodic averaging
/// across processes).
pub fn train_decoupled_with(
    replicas: &[(&Model, &dyn Optimizer)],
    data: &Splits,
    cfg: &TrainConfig,
    acfg: &AsyncConfig,
    start: Position,
    periodic: Option<&mut dyn super::coordinator::Periodic>,
    obs: &mut Observer,
) -> Result<Summary> {
    if replicas.is_empty() || acfg.fwd_threads == 0 || acfg.bwd_threads == 0 {
        return Err(EngineError::InvalidArgument(
            "asynchronous training needs at least one worker with one forward and one backward thread".into(),
        ));
    }
    if acfg.queue > MAX_QUEUE {
        return Err(EngineError::InvalidArgument(format!(
            "a queue of {} batches between forward and backward threads is more than the {MAX_QUEUE} allowed; each waiting batch holds a full set of activations on the device",
            acfg.queue
        )));
    }
    acfg.delays.check_workers(replicas.len())?;
    let train = &data.train;
    let spe = cfg.steps_per_epoch(train.len());
    if spe == 0 {
        return Err(EngineError::InvalidArgument(format!(
            "the batch size {} is larger than the {} training samples; use a smaller batch",
            cfg.batch,
            train.len()
        )));
    }
    let horizon = spe * cfg.epochs as u64;
    let total = cfg.max_steps.map_or(horizon, |m| m.min(horizon));
    let groups = replicas[0].0.param_groups();
    let slots_per_replica = acfg.fwd_threads + acfg.bwd_threads + acfg.queue;

    let mut rts = Vec::new();
    for (index, &(model, optim)) in replicas.iter().enumerate() {
        let mut slots = Vec::new();
        for _ in 0..slots_per_replica {
            let (plan, stash) = match acfg.weights {
                Weights::Live => (model.plan(cfg.batch, true)?, None),
                Weights::Stash | Weights::Predict => {
                    let copies: Vec<Vec<Tensor>> = model
                        .layers()
                        .iter()
                        .map(|l| l.params().iter().map(|p| Tensor::empty_like(&p.value)).collect())
                        .collect();
                    let plan = model.plan_reading(cfg.batch, true, &copies)?;
                    let mut pairs = Vec::new();
                    let mut predict = Vec::new();
                    for (l, (layer, copies)) in model.layers().iter().zip(copies).enumerate() {
                        for ((p, copy), v) in layer.params().iter().zip(copies).zip(optim.direction(l)) {
                            if acfg.weights == Weights::Predict {
                                predict.push(scale_add(model.device(), &copy, v, 0.0, 1.0)?);
                            }
                            pairs.push((l, p.value.clone(), copy));
                        }
                    }
                    (plan, Some(Stash { pairs, predict }))
                }
            };
            let updates = optim.updates(model, &plan)?;
            slots.push(Slot { plan, updates, stash });
        }
        let free = flume::unbounded();
        for s in 0..slots.len() {
            let _ = free.0.send(s);
        }
        let base = if acfg.delays.needs_base_step() {
            super::undelayed_step_time(model, &slots[0].plan)?
        } else {
            Duration::ZERO
        };
        rts.push(Replica {
            index,
            model,
            optim,
            slots,
            free,
            inbox: flume::unbounded(),
            state: Mutex::new(State {
                versions: vec![0; model.layers().len()],
                staleness: vec![Staleness::default(); model.layers().len()],
            }),
            delays: Mutex::new(acfg.delays.sampler(index, cfg.seed, base)),
            local_updates: AtomicU64::new(0),
            sent: (0..replicas.len()).map(|_| AtomicU64::new(0)).collect(),
            applied_from: (0..replicas.len()).map(|_| AtomicU64::new(0)).collect(),
        });
    }

    let books = Books::start(cfg, spe, total, start.step, replicas[0].0.num_params(), obs)?;
    let shared =
        Shared::new(Feed::sharded(train, cfg.batch, cfg.seed, spe, start.step, total, cfg.shard.clone()), start.step);
    let mut devices: Vec<Device> = Vec::new();
    for (m, _) in replicas {
        if !devices.iter().any(|d| d.same_as(m.device())) {
            devices.push(m.device().clone());
        }
    }
    let mut evaluator = Evaluator::new(replicas[0].0, cfg.eval_batch);
    let rts_ref = &rts;
    let shared_ref = &shared;
    let groups_ref = &groups;
    let mut summary = std::thread::scope(|scope| -> Result<Summary> {
        for rt in rts_ref {
            // bounded(0) is a rendezvous: a send waits for a receiver.
            let (tx, rx) = flume::bounded::<Item>(acfg.queue);
            for _ in 0..acfg.fwd_threads {
                let tx = tx.clone();
                shared_ref.running.fetch_add(1, Ordering::AcqRel);
                scope.spawn(move || shared_ref.worker(|| rt.forward_thread(shared_ref, tx, cfg, horizon)));
            }
            drop(tx);
            for _ in 0..acfg.bwd_threads {
                let rx = rx.clone();
                shared_ref.running.fetch_add(1, Ordering::AcqRel);
                scope.spawn(move || {
                    shared_ref.worker(|| rt.backward_thread(shared_ref, rx, rts_ref, groups_ref, acfg, cfg, horizon))
                });
            }
        }
        let mut take_totals = || -> Result<(f64, f64, f64)> {
            let mut sum = (0.0, 0.0, 0.0);
            for rt in rts_ref {
                for s in &rt.slots {
                    let (l, c, n) = s.plan.take_totals()?;
                    sum = (sum.0 + l, sum.1 + c, sum.2 + n);
                }
            }
            Ok(sum)
        };
        let mut finish = || -> Result<()> { rts_ref.iter().try_for_each(|rt| rt.drain_inbox(shared_ref)) };
        let mut save = |pos: Position, elapsed: Elapsed| save_at(cfg, replicas[0].0, replicas[0].1, pos, elapsed);
        let hooks = Hooks {
            devices: devices.clone(),
            take_totals: &mut take_totals,
            save: &mut save,
            finish: &mut finish,
            periodic: periodic.map(|p| p as &mut dyn super::coordinator::Periodic),
        };
        coordinate(shared_ref, cfg, &data.test, &mut evaluator, hooks, books, obs)
    })?;

    let mut staleness = Staleness::default();
    for rt in &rts {
        rt.state.lock().expect("state poisoned").staleness.iter().for_each(|s| staleness.merge(s));
    }
    summary.staleness = Some(staleness);
    summary.updates = Some(UpdateCounts {
        local: rts.iter().map(|r| r.local_updates.load(Ordering::Relaxed)).collect(),
        sent: rts.iter().map(|r| r.sent.iter().map(|c| c.load(Ordering::Relaxed)).collect()).collect(),
        applied: rts.iter().map(|r| r.applied_from.iter().map(|c| c.load(Ordering::Relaxed)).collect()).collect(),
        layers_with_params: groups.len() as u64,
    });
    summary.model_checksum = replicas[0].0.checksum()?;
    report_done(summary, obs)
}
