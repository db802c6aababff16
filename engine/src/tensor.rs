//! GPU tensors: a pooled storage buffer of 4-byte elements plus a shape (row-major,
//! contiguous). Reshaping shares the buffer.

use std::sync::Arc;

use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::pool::PooledBuffer;

/// What the 4-byte elements are. Everything numeric is f32; labels and indices are u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

/// Usage of every tensor buffer: kernels read and write it, and it can be copied to and from.
const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// A tensor living in GPU memory. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    buf: Arc<PooledBuffer>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.dtype, self.shape)
    }
}

impl Tensor {
    /// An uninitialised tensor (contents undefined: it may be a recycled buffer).
    ///
    /// Errors: [`EngineError::TooLarge`] when the tensor does not fit in one storage buffer
    /// of the device (callers add which layer and batch it was for).
    pub fn empty(dev: &Device, shape: &[usize], dtype: DType) -> Result<Self> {
        // Checked with overflow-free arithmetic first: the product below then fits.
        dev.check_tensor("a tensor", shape)?;
        let bytes = shape.iter().product::<usize>() as u64 * 4;
        let buf = PooledBuffer::new(dev, bytes, USAGE).ok_or_else(|| rounded_too_large(dev, shape, bytes))?;
        Ok(Self { buf: Arc::new(buf), shape: shape.to_vec(), dtype })
    }

    /// An uninitialised tensor of `t`'s shape and type on its device. Infallible: a buffer
    /// the size of one that exists fits the device.
    pub fn empty_like(t: &Tensor) -> Self {
        let buf = PooledBuffer::new(t.device(), t.buf.raw().size(), USAGE).expect("an existing buffer's size fits");
        Self { buf: Arc::new(buf), shape: t.shape.clone(), dtype: t.dtype }
    }

    /// A tensor of zeros of `t`'s shape on its device (infallible, as [`Tensor::empty_like`]).
    pub fn zeros_like(t: &Tensor) -> Self {
        let z = Self::empty_like(t);
        z.fill_zero();
        z
    }

    /// A tensor of zeros.
    pub fn zeros(dev: &Device, shape: &[usize]) -> Result<Self> {
        let t = Self::empty(dev, shape, DType::F32)?;
        t.fill_zero();
        Ok(t)
    }

    /// Uploads `data` (row-major) into a new f32 tensor of `shape`.
    pub fn from_f32(dev: &Device, shape: &[usize], data: &[f32]) -> Result<Self> {
        let t = Self::empty(dev, shape, DType::F32)?;
        t.write_f32(data)?;
        Ok(t)
    }

    /// Uploads `data` into a new u32 tensor of `shape`.
    pub fn from_u32(dev: &Device, shape: &[usize], data: &[u32]) -> Result<Self> {
        let t = Self::empty(dev, shape, DType::U32)?;
        t.check_len(data.len())?;
        dev.queue().write_buffer(t.buffer(), 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len != self.numel() {
            return Err(EngineError::Shape(format!(
                "{} values given for a tensor of shape {:?} ({} elements)",
                len,
                self.shape,
                self.numel()
            )));
        }
        Ok(())
    }

    /// Overwrites the tensor with `data` (queued: ordered after work already submitted).
    pub fn write_f32(&self, data: &[f32]) -> Result<()> {
        self.check_len(data.len())?;
        if !data.is_empty() {
            self.device().queue().write_buffer(self.buffer(), 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Overwrites the tensor with u32 `data`.
    pub fn write_u32(&self, data: &[u32]) -> Result<()> {
        self.check_len(data.len())?;
        if !data.is_empty() {
            self.device().queue().write_buffer(self.buffer(), 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Sets every element to zero (queued).
    pub fn fill_zero(&self) {
        let dev = self.device();
        let mut enc = dev.wgpu().create_command_encoder(&Default::default());
        enc.clear_buffer(self.buffer(), 0, None);
        dev.submit([enc.finish()]);
    }

    /// Same buffer, another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(EngineError::Shape(format!(
                "cannot reshape {:?} ({} elements) to {:?} ({} elements)",
                self.shape,
                self.numel(),
                shape,
                n
            )));
        }
        Ok(Self { buf: self.buf.clone(), shape: shape.to_vec(), dtype: self.dtype })
    }

    /// Reads the tensor back to the host, waiting for all work submitted before.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice(&self.read_bytes()?).to_vec())
    }

    /// Reads a u32 tensor back to the host.
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        Ok(bytemuck::cast_slice(&self.read_bytes()?).to_vec())
    }

    fn read_bytes(&self) -> Result<Vec<u8>> {
        let bytes = (self.numel() * 4) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        read_buffer(self.device(), self.buffer(), 0, bytes)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The wgpu buffer (may be larger than `numel * 4`: sizes are rounded up by the pool).
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }

    pub fn device(&self) -> &Device {
        self.buf.device()
    }

    /// True when both share one buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

/// A tensor whose exact size fits the limit but whose pooled size (rounded up) does not.
fn rounded_too_large(dev: &Device, shape: &[usize], bytes: u64) -> EngineError {
    EngineError::TooLarge {
        what: format!("a tensor of shape {shape:?}"),
        bytes: Some(bytes.div_ceil(256) * 256),
        limit: dev.max_buffer_bytes(),
        device: dev.info().name.clone(),
        batch: None,
    }
}

/// Copies `bytes` bytes at `offset` of `src` to the host. WebGPU cannot map a storage buffer,
/// so the data goes through a MAP_READ staging buffer, and mapping completes only when the
/// device is polled.
pub fn read_buffer(dev: &Device, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
    let staging = dev.wgpu().create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = dev.wgpu().create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
    dev.submit([enc.finish()]);
    dev.counters().readback();
    let (tx, rx) = flume::bounded(1);
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    dev.wait_idle()?;
    rx.recv()
        .map_err(|_| EngineError::Device("the GPU dropped a read-back request".into()))?
        .map_err(|e| EngineError::Device(format!("reading a buffer back failed: {e}")))?;
    let out = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| EngineError::Device(format!("reading a buffer back failed: {e}")))?;
        view.to_vec()
    };
    staging.unmap();
    Ok(out)
}

/// A read-back of several tensors into one host vector, recorded into an encoder and waited
/// for by submission: only the work up to that submission is waited for, so later
/// submissions keep the GPU busy meanwhile (DDP reduces a layer's gradients while the layers
/// below are still differentiated).
pub struct ReadBack {
    staging: wgpu::Buffer,
    index: Option<wgpu::SubmissionIndex>,
    done: Option<flume::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>>,
    floats: usize,
}

impl ReadBack {
    /// Records copies of `tensors`, concatenated in order, into `enc`.
    pub fn record(dev: &Device, enc: &mut wgpu::CommandEncoder, tensors: &[&Tensor]) -> Self {
        let floats: usize = tensors.iter().map(|t| t.numel()).sum();
        let staging = dev.wgpu().create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (floats.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut offset = 0u64;
        for t in tensors {
            let bytes = (t.numel() * 4) as u64;
            if bytes > 0 {
                enc.copy_buffer_to_buffer(t.buffer(), 0, &staging, offset, bytes);
            }
            offset += bytes;
        }
        Self { staging, index: None, done: None, floats }
    }

    /// Call right after submitting the encoder, with the index `submit` returned.
    pub fn submitted(&mut self, index: wgpu::SubmissionIndex) {
        let (tx, rx) = flume::bounded(1);
        self.staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.index = Some(index);
        self.done = Some(rx);
    }

    /// Waits for the submission and returns the values.
    pub fn wait(self, dev: &Device) -> Result<Vec<f32>> {
        let (Some(index), Some(done)) = (self.index, self.done) else {
            return Err(EngineError::Device("a read-back was waited for before it was submitted".into()));
        };
        dev.counters().readback();
        dev.wgpu()
            .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
            .map_err(|e| EngineError::Device(format!("waiting for the GPU failed: {e}")))?;
        done.recv()
            .map_err(|_| EngineError::Device("the GPU dropped a read-back request".into()))?
            .map_err(|e| EngineError::Device(format!("reading a buffer back failed: {e}")))?;
        let out = {
            let view = self
                .staging
                .get_mapped_range(..)
                .map_err(|e| EngineError::Device(format!("reading a buffer back failed: {e}")))?;
            bytemuck::cast_slice::<u8, f32>(&view)[..self.floats].to_vec()
        };
        self.staging.unmap();
        Ok(out)
    }
}
