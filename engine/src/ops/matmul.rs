//! Matrix products with the transposes that a linear layer's forward and backward need.

use bytemuck::{Pod, Zeroable};

use super::{expect, u32_of};
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{Dispatch, Kernel};
use crate::tensor::{DType, Tensor};

/// Which WGSL implementation runs a matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// 4x4 register blocks per thread, operands read straight from storage (`matmul.wgsl`).
    Blocked,
    /// 64x64 tiles staged through workgroup memory (`matmul_tiled.wgsl`).
    Tiled,
}

impl MatmulKernel {
    /// The faster variant for `dev` as measured by `asgd bench matmul`: on a CPU driver
    /// (lavapipe) workgroup barriers cost more than the caches already save, so `Blocked`;
    /// elsewhere `Tiled`.
    pub fn for_device(dev: &Device) -> Self {
        if dev.is_cpu() {
            Self::Blocked
        } else {
            Self::Tiled
        }
    }

    fn shader(self) -> &'static asgd_shaders::Shader {
        match self {
            Self::Blocked => &asgd_shaders::MATMUL,
            Self::Tiled => &asgd_shaders::MATMUL_TILED,
        }
    }
}

/// The shape and flags of `C = alpha * op(A) op(B) (+ C)`.
#[derive(Clone, Copy, Debug)]
pub struct MatmulSpec {
    /// Rows of C and of op(A).
    pub m: usize,
    /// Columns of C and of op(B).
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// A is stored (K, M) rather than (M, K).
    pub trans_a: bool,
    /// B is stored (N, K) rather than (K, N).
    pub trans_b: bool,
    /// Add into C instead of overwriting it.
    pub accumulate: bool,
    /// Scale of the product.
    pub alpha: f32,
}

impl MatmulSpec {
    /// `C = A B` with A (M, K) and B (K, N).
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Self { m, n, k, trans_a: false, trans_b: false, accumulate: false, alpha: 1.0 }
    }

    /// Floating-point operations of the product (2 M N K).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
}

/// `c = alpha * op(a) op(b) (+ c)`.
// c is (M, N); a is (M, K) or (K, M) with trans_a; b is (K, N) or (N, K) with trans_b.
pub fn matmul(
    dev: &Device,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    spec: MatmulSpec,
    kernel: MatmulKernel,
) -> Result<Dispatch> {
    let MatmulSpec { m, n, k, .. } = spec;
    expect(c, "matmul output", m * n, DType::F32)?;
    expect(a, "matmul left operand", m * k, DType::F32)?;
    expect(b, "matmul right operand", k * n, DType::F32)?;
    let params = Params { m: u32_of(m, "M")?, n: u32_of(n, "N")?, k: u32_of(k, "K")?, alpha: spec.alpha };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let kern = Kernel::get(
        dev,
        kernel.shader(),
        "matmul",
        &[
            ("TRANS_A", flag(spec.trans_a)),
            ("TRANS_B", flag(spec.trans_b)),
            ("ACCUMULATE", flag(spec.accumulate)),
        ],
    );
    let groups = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1];
    Ok(Dispatch::new(dev, kern, &params, &[c, a, b], groups))
}

/// CPU reference in f64.
pub mod cpu {
    use super::MatmulSpec;

    /// `c = alpha * op(a) op(b) (+ c)` with the layouts of [`super::matmul`].
    pub fn matmul(c: &mut [f64], a: &[f64], b: &[f64], s: MatmulSpec) {
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0.0;
                for p in 0..s.k {
                    let av = if s.trans_a { a[p * s.m + i] } else { a[i * s.k + p] };
                    let bv = if s.trans_b { b[j * s.k + p] } else { b[p * s.n + j] };
                    acc += av * bv;
                }
                let v = s.alpha as f64 * acc;
                c[i * s.n + j] = if s.accumulate { c[i * s.n + j] + v } else { v };
            }
        }
    }
}
