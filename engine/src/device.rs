//! Devices: one wgpu adapter + device + queue, with the pipeline cache and buffer pool that
//! belong to it.
//!
//! wgpu gives exactly one queue per device. Several devices can be opened from the same adapter
//! ([`Device::open_sibling`]); that is how lanes get queues of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{EngineError, Result};
use crate::kernel::PipelineCache;
use crate::pool::BufferPool;
use crate::tune::{TuneMode, Tuner};

/// Which graphics API to run on. `Auto` takes `WGPU_BACKEND` from the environment if set,
/// else every backend the platform has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    /// Parses `auto|vulkan|metal|dx12|gl` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "vulkan" | "vk" => Ok(Self::Vulkan),
            "metal" | "mtl" => Ok(Self::Metal),
            "dx12" | "d3d12" => Ok(Self::Dx12),
            "gl" | "gles" | "opengl" => Ok(Self::Gl),
            other => Err(EngineError::InvalidArgument(format!(
                "unknown backend '{other}'; use one of auto, vulkan, metal, dx12, gl"
            ))),
        }
    }

    fn backends(self) -> wgpu::Backends {
        match self {
            Self::Auto => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
}

/// What to open: a backend and optionally an adapter index as printed by `asgd devices`.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    pub backend: BackendChoice,
    /// Index into [`list_adapters`]'s list for the same backend; `None` picks the first
    /// adapter, preferring a discrete GPU, then an integrated one, then anything.
    pub adapter: Option<usize>,
    /// Whether matrix-product kernels are chosen by measurement ([`crate::tune`]); `None`
    /// takes `ASGD_TUNE` from the environment, else on.
    pub tune: Option<TuneMode>,
}

/// A description of one adapter, as `asgd devices` prints it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// Optional shader features the adapter offers and a device opened on it requests.
    pub features: ShaderFeatures,
}

/// The optional shader features asgd uses where an adapter has them. A device without them
/// runs the same kernels as before they existed; each kernel that needs one is offered only
/// where it is present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShaderFeatures {
    /// Subgroup operations in compute shaders ([`wgpu::Features::SUBGROUP`]): lanes of a
    /// subgroup exchange registers, so that one lane's storage load can serve all of them.
    pub subgroup: bool,
    /// 16-bit floats in shaders and storage buffers ([`wgpu::Features::SHADER_F16`]).
    pub shader_f16: bool,
    /// The smallest and largest subgroup size the adapter may use; equal when it is fixed,
    /// which the generated subgroup kernels need (they are unrolled over the lanes).
    pub subgroup_sizes: (u32, u32),
}

impl ShaderFeatures {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let f = adapter.features();
        let info = adapter.get_info();
        Self {
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }

    /// The wgpu features to request for these.
    fn wgpu(&self) -> wgpu::Features {
        let mut f = wgpu::Features::empty();
        f.set(wgpu::Features::SUBGROUP, self.subgroup);
        f.set(wgpu::Features::SHADER_F16, self.shader_f16);
        f
    }

    /// The subgroup size when subgroups are available and their size is fixed.
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let (lo, hi) = self.subgroup_sizes;
        (self.subgroup && lo == hi && lo > 0).then_some(lo)
    }

    /// `subgroups(8), f16`, or `none`: for `asgd devices` and messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.subgroup {
            let (lo, hi) = self.subgroup_sizes;
            parts.push(if lo == hi { format!("subgroups({lo})") } else { format!("subgroups({lo}-{hi})") });
        }
        if self.shader_f16 {
            parts.push("f16".to_string());
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

fn instance(backend: BackendChoice) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backend.backends();
    // Validation layers are for debugging wgpu itself; keep the defaults wgpu derives from the
    // build (debug builds validate) but let WGPU_DEBUG/WGPU_VALIDATION override them.
    desc.flags = desc.flags.with_env();
    wgpu::Instance::new(desc)
}

fn adapters(backend: BackendChoice) -> Vec<wgpu::Adapter> {
    let inst = instance(backend);
    let mut list = pollster::block_on(inst.enumerate_adapters(backend.backends()));
    // A stable order (by backend, then name) so that an index means the same thing every run.
    list.sort_by_key(|a| {
        let i = a.get_info();
        (format!("{:?}", i.backend), i.name, i.device)
    });
    list
}

fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = &adapter.get_info();
    let device_type = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "CPU",
        wgpu::DeviceType::Other => "other",
    };
    let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
        (true, true) => "unknown".to_string(),
        (false, true) => info.driver.clone(),
        (true, false) => info.driver_info.clone(),
        (false, false) => format!("{} ({})", info.driver, info.driver_info),
    };
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend).to_lowercase(),
        device_type: device_type.to_string(),
        driver,
        features: ShaderFeatures::of(adapter),
    }
}

/// Every adapter wgpu can see for `backend`, in the order adapter indices count them.
pub fn list_adapters(backend: BackendChoice) -> Vec<AdapterSummary> {
    adapters(backend).iter().enumerate().map(|(i, a)| summary(i, a)).collect()
}

/// The sentence that tells a user with no adapter what to install.
pub const NO_ADAPTER_HINT: &str = "no GPU adapter found; install a Vulkan driver \
(on Debian or Ubuntu without a GPU: `apt-get install libvulkan1 mesa-vulkan-drivers` for the \
lavapipe CPU driver) or pick another backend";

/// What a device has been asked to do since it was opened: the per-step overhead that
/// `asgd bench step --per-layer` and the training metrics report.
#[derive(Debug, Default)]
pub struct Counters {
    dispatches: AtomicU64,
    bind_groups: AtomicU64,
    submissions: AtomicU64,
    readbacks: AtomicU64,
}

/// A snapshot of [`Counters`]; subtract two to count what happened in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Bind groups created (a plan builds them once; none should appear per step).
    pub bind_groups: u64,
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Buffers read back to the host (each a wait for the GPU).
    pub readbacks: u64,
}

impl std::ops::Sub for CounterValues {
    type Output = CounterValues;
    fn sub(self, o: Self) -> Self {
        CounterValues {
            dispatches: self.dispatches - o.dispatches,
            bind_groups: self.bind_groups - o.bind_groups,
            submissions: self.submissions - o.submissions,
            readbacks: self.readbacks - o.readbacks,
        }
    }
}

impl Counters {
    pub(crate) fn dispatch(&self) {
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bind_group(&self) {
        self.bind_groups.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn readback(&self) {
        self.readbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn values(&self) -> CounterValues {
        CounterValues {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            bind_groups: self.bind_groups.load(Ordering::Relaxed),
            submissions: self.submissions.load(Ordering::Relaxed),
            readbacks: self.readbacks.load(Ordering::Relaxed),
        }
    }
}

struct Inner {
    adapter: wgpu::Adapter,
    info: AdapterSummary,
    is_cpu: bool,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: PipelineCache,
    pool: BufferPool,
    tuner: Arc<Tuner>,
    counters: Arc<Counters>,
    /// The limits the device was opened with; buffers and grids are checked against them
    /// before wgpu sees them, so a size too large is an error and not a validation panic.
    limits: wgpu::Limits,
    /// The first validation or out-of-memory error wgpu reported outside an error scope
    /// (wgpu's default handler panics); [`Device::check_errors`] turns it into an error.
    uncaptured: Arc<Mutex<Option<String>>>,
}

/// One opened GPU: device, queue, its compiled pipelines and its buffer pool. Cheap to clone
/// (an `Arc`); every clone is the same device and queue.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({} on {})", self.inner.info.name, self.inner.info.backend)
    }
}

impl Device {
    /// Opens the adapter that `opts` names.
    ///
    /// Errors: no adapter at all (with the install hint), an index out of range, or a device
    /// the driver refuses to create.
    pub fn open(opts: &DeviceOptions) -> Result<Self> {
        Self::open_as(opts, None, false)
    }

    /// Opens the adapter that `opts` names, choosing every kernel as for a GPU even where it is
    /// a CPU driver ([`Device::is_cpu`] false): so that the GPU paths (their default products
    /// and convolutions, one value per thread in element-wise kernels) run and are tested on a
    /// machine without a GPU. Slower there; for tests.
    pub fn open_with_gpu_kernels(opts: &DeviceOptions) -> Result<Self> {
        Self::open_as(opts, None, true)
    }

    /// Opens the adapter that `opts` names with at most `bytes` per storage buffer (binding
    /// and buffer): a small device, so that tests can reach the limits without gigabytes.
    pub fn open_with_buffer_limit(opts: &DeviceOptions, bytes: u64) -> Result<Self> {
        Self::open_as(opts, Some(bytes), false)
    }

    /// [`Device::open`], with the storage-buffer limit and the kernel choices of the other
    /// openers.
    fn open_as(opts: &DeviceOptions, buffer_limit: Option<u64>, gpu_kernels: bool) -> Result<Self> {
        let mut list = adapters(opts.backend);
        if list.is_empty() {
            return Err(EngineError::NoAdapter(NO_ADAPTER_HINT.to_string()));
        }
        let index = match opts.adapter {
            Some(i) if i < list.len() => i,
            Some(index) => return Err(EngineError::NoSuchAdapter { index, count: list.len() }),
            None => {
                let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
                    wgpu::DeviceType::DiscreteGpu => 0,
                    wgpu::DeviceType::IntegratedGpu => 1,
                    wgpu::DeviceType::VirtualGpu => 2,
                    wgpu::DeviceType::Cpu => 3,
                    wgpu::DeviceType::Other => 4,
                };
                // Prefer real hardware, and among equals Vulkan/Metal/DX12 over GL, which
                // lacks compute features on many drivers.
                (0..list.len())
                    .min_by_key(|&i| {
                        let gl = list[i].get_info().backend == wgpu::Backend::Gl;
                        (rank(&list[i]), gl)
                    })
                    .expect("list is not empty")
            }
        };
        let mode = match opts.tune {
            Some(m) => m,
            None => TuneMode::from_env()?,
        };
        let adapter = list.swap_remove(index);
        let tuner = Arc::new(Tuner::new(mode, &summary(index, &adapter), crate::tune::cache_dir().as_deref()));
        Self::from_adapter_limited(adapter, index, tuner, buffer_limit, gpu_kernels)
    }

    fn from_adapter_limited(
        adapter: wgpu::Adapter,
        index: usize,
        tuner: Arc<Tuner>,
        buffer_limit: Option<u64>,
        gpu_kernels: bool,
    ) -> Result<Self> {
        let info = adapter.get_info();
        // Ask for everything the adapter offers: storage-buffer sizes and workgroup counts
        // matter for large batches, and defaults are far below what drivers give.
        let mut limits = adapter.limits();
        if let Some(bytes) = buffer_limit {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(bytes);
            limits.max_buffer_size = limits.max_buffer_size.min(bytes);
        }
        let summary = summary(index, &adapter);
        let desc = wgpu::DeviceDescriptor {
            label: Some("asgd"),
            // Only what the adapter offers, so that opening never fails for a feature.
            required_features: summary.features.wgpu(),
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| EngineError::Device(format!("could not open a device on {}: {e}", info.name)))?;
        // wgpu's default handler panics on any error not caught by a scope; keep the first
        // one instead, for the next check to report.
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut first = sink.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| one_line(&e));
        }));
        let is_cpu = info.device_type == wgpu::DeviceType::Cpu && !gpu_kernels;
        Ok(Self {
            inner: Arc::new(Inner {
                info: summary,
                is_cpu,
                pipelines: PipelineCache::default(),
                pool: BufferPool::default(),
                tuner,
                counters: Arc::default(),
                limits: desc.required_limits.clone(),
                uncaptured,
                adapter,
                device,
                queue,
            }),
        })
    }

    /// Opens a second device (with its own queue, pipelines and pool) on the same adapter.
    /// Buffers of one device cannot be used on another; kernel choices are shared.
    pub fn open_sibling(&self) -> Result<Self> {
        let gpu_kernels = self.inner.adapter.get_info().device_type == wgpu::DeviceType::Cpu && !self.inner.is_cpu;
        let (adapter, tuner) = (self.inner.adapter.clone(), self.inner.tuner.clone());
        Self::from_adapter_limited(adapter, self.inner.info.index, tuner, None, gpu_kernels)
    }

    /// Submits command buffers to the queue, counting them.
    pub fn submit<I: IntoIterator<Item = wgpu::CommandBuffer>>(&self, cmds: I) -> wgpu::SubmissionIndex {
        self.inner.counters.submissions.fetch_add(1, Ordering::Relaxed);
        self.inner.queue.submit(cmds)
    }

    /// Dispatches, bind groups, submissions and read-backs so far.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.inner.counters
    }

    /// The kernel tuner of this device's adapter.
    pub fn tuner(&self) -> &Tuner {
        &self.inner.tuner
    }

    /// The adapter this device was opened on.
    pub fn info(&self) -> &AdapterSummary {
        &self.inner.info
    }

    /// True for a software rasteriser such as lavapipe: kernels are picked for CPU caches.
    pub fn is_cpu(&self) -> bool {
        self.inner.is_cpu
    }

    /// The optional shader features this device was opened with.
    pub fn features(&self) -> ShaderFeatures {
        self.inner.info.features
    }

    /// True when kernels may use subgroup operations.
    pub fn has_subgroups(&self) -> bool {
        self.inner.info.features.subgroup
    }

    /// The subgroup size, when the device has subgroups of one fixed size.
    pub fn subgroup_size(&self) -> Option<u32> {
        self.inner.info.features.fixed_subgroup_size()
    }

    /// True when kernels may use 16-bit floats.
    pub fn has_f16(&self) -> bool {
        self.inner.info.features.shader_f16
    }

    /// The raw wgpu device, for code that needs it.
    pub fn wgpu(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The device's one queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    pub(crate) fn pipelines(&self) -> &PipelineCache {
        &self.inner.pipelines
    }

    pub(crate) fn pool(&self) -> &BufferPool {
        &self.inner.pool
    }

    /// Blocks until all submitted work has finished; fails if wgpu reported an error since
    /// the device was opened.
    pub fn wait_idle(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| EngineError::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The largest storage buffer a kernel can bind on this device, in bytes.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.inner.limits.max_storage_buffer_binding_size.min(self.inner.limits.max_buffer_size)
    }

    /// Checks that a tensor `what` of `shape` (4-byte elements) fits in one storage buffer
    /// of this device, before anything is allocated for it.
    pub fn check_tensor(&self, what: &str, shape: &[usize]) -> Result<()> {
        let bytes = shape.iter().try_fold(4u64, |acc, &d| acc.checked_mul(d as u64));
        let limit = self.max_buffer_bytes();
        match bytes {
            Some(b) if b <= limit => Ok(()),
            _ => Err(EngineError::TooLarge {
                what: format!("{what} of shape {shape:?}"),
                bytes,
                limit,
                device: self.inner.info.name.clone(),
                batch: None,
            }),
        }
    }

    /// Checks a grid of workgroups against the device's per-dimension limit; `what` names
    /// the kernel.
    pub fn check_grid(&self, what: &str, groups: [u32; 3]) -> Result<()> {
        let max = self.inner.limits.max_compute_workgroups_per_dimension;
        if groups.iter().all(|&g| g <= max) {
            return Ok(());
        }
        Err(EngineError::Device(format!(
            "kernel {what} needs a grid of {groups:?} workgroups, more than the {max} per dimension that {} allows; \
             use a smaller batch or layer",
            self.inner.info.name
        )))
    }

    /// An error wgpu reported outside any error scope, if there was one (reported once).
    pub fn check_errors(&self) -> Result<()> {
        let first = self.inner.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take();
        match first {
            Some(e) => Err(EngineError::Device(format!("the GPU driver refused work: {e}"))),
            None => Ok(()),
        }
    }

    /// Runs `f` with wgpu's validation and out-of-memory errors caught: an error wgpu
    /// reports while `f` creates buffers, pipelines or bind groups (on this thread) comes
    /// back as an error instead of a panic. `what` names what was being built.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.inner.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.inner.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let invalid = pollster::block_on(validation.pop());
        let no_memory = pollster::block_on(oom.pop());
        let out = out?;
        if let Some(e) = no_memory {
            self.inner.pool.clear();
            return Err(EngineError::Device(format!(
                "the GPU ran out of memory while building {what}: {}; use a smaller batch or model",
                one_line(&e)
            )));
        }
        if let Some(e) = invalid {
            return Err(EngineError::Device(format!("the GPU driver refused {what}: {}", one_line(&e))));
        }
        Ok(out)
    }

    /// True when two handles are the same device (clones of one `open`).
    pub fn same_as(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// A wgpu error on one line: its message and the chain of its sources.
fn one_line(e: &wgpu::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
