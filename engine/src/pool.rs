//! A buffer pool: storage buffers are recycled by (size, usage) instead of being created and
//! destroyed for every plan. A [`PooledBuffer`] goes back to its pool when dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::device::Device;

/// Sizes are rounded up to this many bytes so that near-equal requests share buffers.
const GRANULE: u64 = 256;

/// Free buffers of one device, keyed by (rounded size in bytes, usage bits).
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<HashMap<(u64, u32), Vec<wgpu::Buffer>>>,
}

impl BufferPool {
    fn take(&self, size: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let mut free = self.free.lock().expect("buffer pool lock poisoned");
        free.get_mut(&(size, usage.bits())).and_then(Vec::pop)
    }

    fn give(&self, buf: wgpu::Buffer) {
        let key = (buf.size(), buf.usage().bits());
        let mut free = self.free.lock().expect("buffer pool lock poisoned");
        free.entry(key).or_default().push(buf);
    }

    /// Drops every free buffer (after a failed build, so that what it allocated is released).
    pub fn clear(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Bytes held by free buffers (not in use).
    pub fn free_bytes(&self) -> u64 {
        let free = self.free.lock().expect("buffer pool lock poisoned");
        free.iter().map(|((size, _), v)| size * v.len() as u64).sum()
    }
}

/// A buffer on loan from a device's pool. Its contents are undefined when taken (a fresh
/// buffer is zeroed by wgpu, a recycled one holds whatever it held).
pub struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    dev: Device,
}

impl PooledBuffer {
    /// Takes a buffer of at least `bytes` bytes from `dev`'s pool, or creates one. The
    /// rounded size must fit the device's buffer limit ([`Device::max_buffer_bytes`]):
    /// checked here, where every tensor's buffer is made, so that wgpu never sees one too large.
    pub fn new(dev: &Device, bytes: u64, usage: wgpu::BufferUsages) -> Option<Self> {
        let size = bytes.max(4).div_ceil(GRANULE).checked_mul(GRANULE)?;
        if size > dev.max_buffer_bytes() {
            return None;
        }
        let buf = dev.pool().take(size, usage).unwrap_or_else(|| {
            dev.wgpu().create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false })
        });
        Some(Self { buf: Some(buf), dev: dev.clone() })
    }

    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("present until drop")
    }

    /// The device this buffer belongs to.
    pub fn device(&self) -> &Device {
        &self.dev
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.dev.pool().give(buf);
        }
    }
}
