//! Devices: one wgpu adapter + device + queue, with the pipeline cache and buffer pool that
//! belong to it.
//!
//! wgpu gives exactly one queue per device. Several devices can be opened from the same adapter
//! ([`Device::open_sibling`]); that is how lanes get queues of their own.

use std::sync::Arc;

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

fn summary(index: usize, info: &wgpu::AdapterInfo) -> AdapterSummary {
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
    }
}

/// Every adapter wgpu can see for `backend`, in the order `--adapter` indexes.
pub fn list_adapters(backend: BackendChoice) -> Vec<AdapterSummary> {
    adapters(backend).iter().enumerate().map(|(i, a)| summary(i, &a.get_info())).collect()
}

/// The sentence that tells a user with no adapter what to install.
pub const NO_ADAPTER_HINT: &str = "no GPU adapter found; install a Vulkan driver \
(on Debian or Ubuntu without a GPU: `apt-get install libvulkan1 mesa-vulkan-drivers` for the \
lavapipe CPU driver) or pick another backend";

struct Inner {
    adapter: wgpu::Adapter,
    info: AdapterSummary,
    is_cpu: bool,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: PipelineCache,
    pool: BufferPool,
    tuner: Arc<Tuner>,
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
        let tuner =
            Arc::new(Tuner::new(mode, &summary(index, &adapter.get_info()), crate::tune::cache_dir().as_deref()));
        Self::from_adapter(adapter, index, tuner)
    }

    fn from_adapter(adapter: wgpu::Adapter, index: usize, tuner: Arc<Tuner>) -> Result<Self> {
        let info = adapter.get_info();
        // Ask for everything the adapter offers: storage-buffer sizes and workgroup counts
        // matter for large batches, and defaults are far below what drivers give.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("asgd"),
            required_features: wgpu::Features::empty(),
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| EngineError::Device(format!("could not open a device on {}: {e}", info.name)))?;
        let is_cpu = info.device_type == wgpu::DeviceType::Cpu;
        Ok(Self {
            inner: Arc::new(Inner {
                info: summary(index, &info),
                is_cpu,
                pipelines: PipelineCache::default(),
                pool: BufferPool::default(),
                tuner,
                adapter,
                device,
                queue,
            }),
        })
    }

    /// Opens a second device (with its own queue, pipelines and pool) on the same adapter.
    /// Buffers of one device cannot be used on another; kernel choices are shared.
    pub fn open_sibling(&self) -> Result<Self> {
        Self::from_adapter(self.inner.adapter.clone(), self.inner.info.index, self.inner.tuner.clone())
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

    /// Blocks until all submitted work has finished.
    pub fn wait_idle(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| EngineError::Device(format!("waiting for the GPU failed: {e}")))
    }

    /// True when two handles are the same device (clones of one `open`).
    pub fn same_as(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
