//! Compiled kernels and recorded dispatches.
//!
//! Each WGSL entry point is compiled once per device and kept in the device's
//! [`PipelineCache`]. A [`Dispatch`] is a kernel with its bind group and workgroup counts, built
//! once when a plan is made and recorded into a compute pass every step: no bind group or
//! uniform buffer is created inside a step.
//!
//! Binding convention of every kernel in `shaders/`: `@binding(0)` is a uniform block of
//! parameters, followed by the tensors in order (outputs first, then inputs). Every declared
//! binding is used by its entry point, because wgpu's automatic layout drops unused ones.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use asgd_shaders::Shader;
use wgpu::util::DeviceExt;

use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// Largest workgroup count in one dimension that every WebGPU device accepts.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    shader: Cow<'static, str>,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

/// One compiled compute pipeline.
pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    label: String,
}

/// The compiled pipelines of one device.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<Key, Arc<Kernel>>>,
    modules: Mutex<HashMap<Cow<'static, str>, wgpu::ShaderModule>>,
}

impl PipelineCache {
    /// Number of pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.map.lock().expect("pipeline cache poisoned").len()
    }

    /// True when nothing has been compiled yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Kernel {
    /// The pipeline for `entry` of `shader` specialised by override `constants`, compiled on
    /// first use and cached on the device.
    pub fn get(dev: &Device, shader: &Shader, entry: &'static str, constants: &[(&'static str, f64)]) -> Arc<Kernel> {
        Self::get_with(dev, Cow::Borrowed(shader.name), &|| Cow::Borrowed(shader.source), entry, constants)
    }

    /// Like [`Kernel::get`] for WGSL generated at run time: `name` identifies the source
    /// (equal names must mean equal sources) and `source` is called only on first use.
    pub fn get_generated(
        dev: &Device,
        name: String,
        source: &dyn Fn() -> String,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Arc<Kernel> {
        Self::get_with(dev, Cow::Owned(name), &|| Cow::Owned(source()), entry, constants)
    }

    fn get_with(
        dev: &Device,
        name: Cow<'static, str>,
        source: &dyn Fn() -> Cow<'static, str>,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Arc<Kernel> {
        let key = Key { shader: name, entry, constants: constants.iter().map(|&(k, v)| (k, v.to_bits())).collect() };
        let cache = dev.pipelines();
        if let Some(k) = cache.map.lock().expect("pipeline cache poisoned").get(&key) {
            return k.clone();
        }
        // Compile outside the map lock: compiling is slow and other lanes may need other
        // pipelines meanwhile. Two threads racing on one key compile twice; one result wins.
        let module = {
            let mut modules = cache.modules.lock().expect("pipeline cache poisoned");
            modules
                .entry(key.shader.clone())
                .or_insert_with(|| {
                    dev.wgpu().create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&key.shader),
                        source: wgpu::ShaderSource::Wgsl(source()),
                    })
                })
                .clone()
        };
        let label = format!("{}::{}", key.shader, entry);
        let pipeline = dev.wgpu().create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let kernel = Arc::new(Kernel { pipeline, layout, label });
        cache.map.lock().expect("pipeline cache poisoned").entry(key).or_insert(kernel).clone()
    }

    /// `shader::entry`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// A kernel bound to its buffers, with its grid: record it into any number of passes.
pub struct Dispatch {
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    counters: Arc<crate::device::Counters>,
    // Kept alive with the bind group that points at them.
    _params: wgpu::Buffer,
    _tensors: Vec<Tensor>,
}

impl Dispatch {
    /// Binds `params` (a `#[repr(C)]` Pod struct matching the shader's uniform block, binding 0)
    /// and `tensors` (bindings 1, 2, ...) to `kernel`, to run on a grid of `groups` workgroups.
    ///
    /// Errors: a grid larger than the device allows (checked here, since wgpu would only
    /// report it when the pass is recorded). Tensor sizes were checked when they were made.
    pub fn new<P: bytemuck::Pod>(
        dev: &Device,
        kernel: Arc<Kernel>,
        params: &P,
        tensors: &[&Tensor],
        groups: [u32; 3],
    ) -> Result<Self> {
        dev.check_grid(kernel.label(), groups)?;
        // Uniform blocks are padded to 16 bytes; pad the contents so every driver is happy.
        let mut contents = bytemuck::bytes_of(params).to_vec();
        contents.resize(contents.len().div_ceil(16).max(1) * 16, 0);
        let params_buf = dev.wgpu().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &contents,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params_buf.as_entire_binding() }];
        for (i, t) in tensors.iter().enumerate() {
            debug_assert!(t.device().same_as(dev), "tensor of another device bound");
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: t.buffer().as_entire_binding() });
        }
        let bind_group = dev.wgpu().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.label()),
            layout: &kernel.layout,
            entries: &entries,
        });
        dev.counters().bind_group();
        Ok(Self {
            kernel,
            bind_group,
            groups,
            counters: dev.counters().clone(),
            _params: params_buf,
            _tensors: tensors.iter().map(|&t| t.clone()).collect(),
        })
    }

    /// Replaces the uniform parameters (queued: takes effect for work submitted after this
    /// call). `params` must be the same type the dispatch was built with.
    pub fn write_params<P: bytemuck::Pod>(&self, dev: &Device, params: &P) {
        dev.queue().write_buffer(&self._params, 0, bytemuck::bytes_of(params));
    }

    /// The kernel's `shader::entry` label.
    pub fn label(&self) -> &str {
        self.kernel.label()
    }

    /// Records the dispatch into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
        self.counters.dispatch();
    }

    /// Records and submits the dispatch on its own (for tests and one-off work).
    pub fn run(&self, dev: &Device) {
        run_all(dev, &[self]);
    }
}

/// Records `dispatches` in order into one compute pass of one encoder and submits it.
pub fn run_all(dev: &Device, dispatches: &[&Dispatch]) {
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for d in dispatches {
            d.record(&mut pass);
        }
    }
    dev.submit([enc.finish()]);
}

/// Seconds per repetition of `record`: `reps` repetitions recorded into one compute pass,
/// submitted, and waited for (benchmarks and the kernel tuner time work this way).
pub fn time_recorded(dev: &Device, reps: usize, record: &dyn Fn(&mut wgpu::ComputePass<'_>)) -> Result<f64> {
    let t0 = std::time::Instant::now();
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for _ in 0..reps {
            record(&mut pass);
        }
    }
    dev.submit([enc.finish()]);
    dev.wait_idle()?;
    Ok(t0.elapsed().as_secs_f64() / reps.max(1) as f64)
}

/// Grid for `n` independent items processed by workgroups of `wg` threads, folded into two
/// dimensions when the count exceeds the per-dimension limit. Kernels rebuild the flat index
/// as `gid.x + gid.y * nwg.x * wg`.
pub fn grid_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = (n as u64).div_ceil(wg as u64);
    if groups <= MAX_GROUPS_PER_DIM as u64 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(MAX_GROUPS_PER_DIM as u64);
        [MAX_GROUPS_PER_DIM, y as u32, 1]
    }
}
