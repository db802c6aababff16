//! Matrix products with the transposes that a linear layer's forward and backward need.

use bytemuck::{Pod, Zeroable};

use super::{expect, flag, u32_of};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::kernel::{grid_1d, Dispatch, Kernel};
use crate::tensor::{DType, Tensor};
pub use asgd_shaders::{
    register_matmul_bias_source, register_matmul_f16_source, register_matmul_source, subgroup_matmul_bias_source,
    subgroup_matmul_source, MatmulLayout, RegisterTile, SubgroupTile,
};

/// Which WGSL implementation runs a matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// 4x4 register blocks per thread, operands read straight from storage (`matmul.wgsl`).
    Blocked,
    /// 64x64 tiles staged through workgroup memory (`matmul_tiled.wgsl`).
    Tiled,
    /// Threads of a workgroup share K, a 4x4 block per workgroup (`matmul_kdot.wgsl`): for tiny
    /// outputs with a long K.
    Kdot,
    /// A generated kernel with a large register block per thread
    /// ([`asgd_shaders::register_matmul`]).
    Register(RegisterTile),
    /// The generated register kernel with the loads of A shared by the lanes of a subgroup
    /// ([`asgd_shaders::subgroup_matmul`]); only on devices whose subgroups have the tile's
    /// lane count.
    Subgroup(SubgroupTile),
    /// The device's tuner decides, per product shape ([`crate::tune`]).
    Auto,
}

impl MatmulKernel {
    /// The kernel used when nothing was measured: on a CPU driver (lavapipe) a generated
    /// register-blocked kernel sized for the product (every load costs there, see
    /// [`asgd_shaders::register_matmul`]), split along K when there are few blocks; elsewhere
    /// the workgroup-memory kernel, or [`MatmulKernel::Kdot`] for tiny outputs with a long K.
    pub fn default_for(dev: &Device, spec: &MatmulSpec) -> Self {
        if dev.is_cpu() {
            // Split along K, small register blocks beat kdot's workgroup reductions there.
            Self::Register(cpu_register_tile(spec))
        } else if use_kdot(spec.m, spec.n, spec.k) {
            Self::Kdot
        } else {
            Self::Tiled
        }
    }

    /// A short name for tables, metrics and the tuning cache: `blocked`, `tiled`, `kdot`, a
    /// register tile's name such as `r32x32w8x4` or a subgroup tile's such as `s8r32x8w8x8`.
    pub fn name(&self) -> String {
        match self {
            Self::Blocked => "blocked".into(),
            Self::Tiled => "tiled".into(),
            Self::Kdot => "kdot".into(),
            Self::Register(t) => t.name(),
            Self::Subgroup(t) => t.name(),
            Self::Auto => "auto".into(),
        }
    }

    /// Parses [`MatmulKernel::name`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blocked" => Some(Self::Blocked),
            "tiled" => Some(Self::Tiled),
            "kdot" => Some(Self::Kdot),
            "auto" => Some(Self::Auto),
            other => RegisterTile::parse(other)
                .map(Self::Register)
                .or_else(|| SubgroupTile::parse(other).map(Self::Subgroup)),
        }
    }
}

/// Register blocks the CPU heuristic and the tuner consider, largest first.
pub const REGISTER_BLOCKS: &[(u32, u32)] = &[(32, 32), (16, 16), (16, 8), (8, 16), (8, 8), (4, 4)];

/// True when a `rows x cols` block is worth compiling for `spec`: blocks above 16x16 only where
/// both operands are read as `vec4` and A is not transposed. Elsewhere such kernels ran slower
/// and took a CPU driver's compiler from seconds to minutes per pipeline.
fn block_allowed(rows: u32, cols: u32, spec: &MatmulSpec) -> bool {
    let l = MatmulLayout::for_shape(spec.m, spec.n, spec.k, spec.trans_a, spec.trans_b);
    rows * cols <= 256 || (l.vec_a && l.vec_b && !l.trans_a)
}

/// Register tiles worth trying for `spec`, best first by a cost model for CPU drivers: loads
/// per multiply-add fall as `1/rows + 1/cols`, padded rows and columns are wasted work, and
/// fewer than 16 threads (two cores' worth of 8-wide SIMD) leave lanes idle.
pub fn register_candidates(spec: &MatmulSpec) -> Vec<RegisterTile> {
    let (m, n) = (spec.m, spec.n);
    let mut scored: Vec<(f64, RegisterTile)> = Vec::new();
    for &(rows, cols) in REGISTER_BLOCKS.iter().filter(|&&(r, c)| block_allowed(r, c, spec)) {
        for threads in [8u32, 32, 64] {
            for threads_x in [1u32, 2, 4, 8, 16, 32, 64] {
                let tile = RegisterTile { rows, cols, threads, threads_x };
                if !tile.is_valid() {
                    continue;
                }
                let (tr, tc) = (tile.tile_rows() as usize, tile.tile_cols() as usize);
                let padded = (m.div_ceil(tr) * tr * n.div_ceil(tc) * tc) as f64;
                let live = (m.div_ceil(rows as usize) * n.div_ceil(cols as usize)) as f64;
                let busy = (live / 16.0).min(1.0);
                let cost = padded * (1.0 / rows as f64 + 1.0 / cols as f64) / busy;
                scored.push((cost, tile));
            }
        }
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut seen = std::collections::HashSet::new();
    // Keep the best layout of each block shape.
    scored.into_iter().filter(|(_, t)| seen.insert((t.rows, t.cols))).map(|(_, t)| t).collect()
}

/// Subgroup tiles worth trying for `spec` on a device with `lanes`-lane subgroups, best first
/// by the load count of [`register_candidates`]'s model with A's loads shared: per four steps
/// of K a thread loads `rows / lanes` units of A (four times that where A is read as scalars)
/// and all of its B (`cols`, or `4 cols` as scalars), for `rows * cols` multiply-adds. Tall
/// blocks gain most; the threads of a row are exactly one subgroup.
pub fn subgroup_candidates(spec: &MatmulSpec, lanes: u32) -> Vec<SubgroupTile> {
    let (m, n) = (spec.m, spec.n);
    let l = MatmulLayout::for_shape(m, n, spec.k, spec.trans_a, spec.trans_b);
    let mut scored: Vec<(f64, SubgroupTile)> = Vec::new();
    for (rows, cols) in [(32u32, 8u32), (16, 8), (32, 4), (16, 4), (8, 8), (8, 4), (4, 4)] {
        for groups in [1u32, 2, 4] {
            let block = RegisterTile { rows, cols, threads: lanes * groups, threads_x: lanes };
            let tile = SubgroupTile { lanes, block };
            if !tile.is_valid() {
                continue;
            }
            let (tr, tc) = (block.tile_rows() as usize, block.tile_cols() as usize);
            let padded = (m.div_ceil(tr) * tr * n.div_ceil(tc) * tc) as f64;
            let live = (m.div_ceil(tr) * n.div_ceil(tc) * (lanes * groups) as usize) as f64;
            let busy = (live / 16.0).min(1.0);
            let a_units = if l.vec_a { rows } else { 4 * rows } as f64 / lanes as f64;
            let b_units = if l.vec_b { cols } else { 4 * cols } as f64;
            let cost = padded * (a_units.max(1.0) + b_units) / (rows * cols) as f64 / busy;
            scored.push((cost, tile));
        }
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut seen = std::collections::HashSet::new();
    scored.into_iter().filter(|(_, t)| seen.insert((t.block.rows, t.block.cols))).map(|(_, t)| t).collect()
}

/// The register tile the cost model of [`register_candidates`] ranks first.
pub fn cpu_register_tile(spec: &MatmulSpec) -> RegisterTile {
    register_candidates(spec)[0]
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
    k_chunk: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SplitParams {
    mn: u32,
    splits: u32,
    alpha: f32,
    accumulate: u32,
}

/// Workgroups below which a product is split along K, and the fewest K values per split.
const SPLIT_BELOW_GROUPS: usize = 32;
const MIN_K_PER_SPLIT: usize = 256;

/// `(splits, k_chunk)` for a product with `tiles` output workgroups: split K when there are
/// too few workgroups to occupy a device and K is long enough to share out. `k_chunk` is a
/// multiple of 16 (the tiled kernel's K slice).
pub fn split_k(tiles: usize, k: usize) -> (usize, usize) {
    split_k_below(tiles, k, SPLIT_BELOW_GROUPS)
}

/// [`split_k`] with the workgroup count below which K is split.
fn split_k_below(tiles: usize, k: usize, below: usize) -> (usize, usize) {
    if tiles >= below || k < 2 * MIN_K_PER_SPLIT {
        return (1, k);
    }
    let want = below.div_ceil(tiles).min(k / MIN_K_PER_SPLIT).max(1);
    let chunk = k.div_ceil(want).div_ceil(16) * 16;
    (k.div_ceil(chunk), chunk)
}

/// `c = alpha * op(a) op(b) (+ c)`: one dispatch, or two when K is split (the second adds
/// the partial products in a fixed order, so results stay deterministic).
// c is (M, N); a is (M, K) or (K, M) with trans_a; b is (K, N) or (N, K) with trans_b.
pub fn matmul(
    dev: &Device,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    spec: MatmulSpec,
    kernel: MatmulKernel,
) -> Result<Vec<Dispatch>> {
    matmul_with_bias(dev, c, a, b, None, false, spec, kernel)
}

/// `c = alpha * op(a) op(b) (+ c) + bias`, with `bias` (N) added to every row, and with `relu`
/// then `c = max(c, 0)`: a linear layer's forward, and the ReLU after it. The generated
/// kernels do both in their store, so the product, the bias and the ReLU are one dispatch and
/// C is written once; where the kernel is another, a separate dispatch adds the bias (and
/// applies the ReLU) after the product.
#[allow(clippy::too_many_arguments)]
pub fn matmul_bias(
    dev: &Device,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: &Tensor,
    relu: bool,
    spec: MatmulSpec,
    kernel: MatmulKernel,
) -> Result<Vec<Dispatch>> {
    expect(bias, "matmul bias", spec.n, DType::F32)?;
    matmul_with_bias(dev, c, a, b, Some(bias), relu, spec, kernel)
}

#[allow(clippy::too_many_arguments)]
fn matmul_with_bias(
    dev: &Device,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
    spec: MatmulSpec,
    kernel: MatmulKernel,
) -> Result<Vec<Dispatch>> {
    let MatmulSpec { m, n, k, .. } = spec;
    expect(c, "matmul output", m * n, DType::F32)?;
    expect(a, "matmul left operand", m * k, DType::F32)?;
    expect(b, "matmul right operand", k * n, DType::F32)?;
    let kernel = match kernel {
        MatmulKernel::Auto => crate::tune::matmul_kernel(dev, &spec),
        // The hand-written kernels hand tiny outputs with a long K to kdot, as they always did.
        MatmulKernel::Blocked | MatmulKernel::Tiled if use_kdot(m, n, k) => MatmulKernel::Kdot,
        other => other,
    };
    let mut constants = vec![("ACCUMULATE", flag(spec.accumulate))];
    let transposes = [("TRANS_A", flag(spec.trans_a)), ("TRANS_B", flag(spec.trans_b))];
    // A kernel that does not add the bias itself: the product, then the bias.
    let unfused = |d: Result<Vec<Dispatch>>| -> Result<Vec<Dispatch>> {
        let mut d = d?;
        if let Some(bias) = bias {
            d.push(crate::ops::bias::bias_add(dev, c, bias, m, 1, relu)?);
        }
        Ok(d)
    };
    let layout = MatmulLayout::for_shape(m, n, k, spec.trans_a, spec.trans_b);
    type Source = Box<dyn Fn() -> String>;
    let (kern, rows, cols, min_groups): (Option<(String, Source)>, _, _, _) = match kernel {
        MatmulKernel::Kdot | MatmulKernel::Auto => return unfused(matmul_kdot(dev, c, a, b, spec, &transposes)),
        MatmulKernel::Blocked => {
            let tx = threads_along_columns(m, n);
            constants.extend(transposes);
            constants.push(("TX", tx as f64));
            (None, 4 * 256 / tx, 4 * tx, SPLIT_BELOW_GROUPS)
        }
        MatmulKernel::Tiled => {
            constants.extend(transposes);
            (None, 64, 64, SPLIT_BELOW_GROUPS)
        }
        MatmulKernel::Register(tile) => {
            // A CPU driver runs a workgroup per core and needs few: split K only below 8, and
            // never for blocks above 16x16, whose split variants compile for tens of seconds;
            // never with a bias, which each split would add.
            let below = if tile.rows * tile.cols <= 256 && bias.is_none() { 8 } else { 1 };
            let source: Source = if bias.is_some() {
                Box::new(move || register_matmul_bias_source(tile, layout))
            } else {
                Box::new(move || register_matmul_source(tile, layout))
            };
            (Some((tile.name(), source)), tile.tile_rows() as usize, tile.tile_cols() as usize, below)
        }
        MatmulKernel::Subgroup(tile) => {
            if dev.subgroup_size() != Some(tile.lanes) {
                return Err(EngineError::InvalidArgument(format!(
                    "kernel {} needs subgroups of {} lanes; {} has {}",
                    tile.name(),
                    tile.lanes,
                    dev.info().name,
                    dev.features().describe()
                )));
            }
            let block = tile.block;
            let below = if block.rows * block.cols <= 256 && bias.is_none() { 8 } else { 1 };
            let source: Source = if bias.is_some() {
                Box::new(move || subgroup_matmul_bias_source(tile, layout))
            } else {
                Box::new(move || subgroup_matmul_source(tile, layout))
            };
            (Some((tile.name(), source)), block.tile_rows() as usize, block.tile_cols() as usize, below)
        }
    };
    if kern.is_none() && bias.is_some() {
        // The hand-written kernels have no bias binding.
        return unfused(matmul_with_bias(dev, c, a, b, None, false, spec, kernel));
    }
    let (gx, gy) = (n.div_ceil(cols), m.div_ceil(rows));
    let (splits, k_chunk) = split_k_below(gx * gy, k, min_groups);
    constants.push(("SPLIT", flag(splits > 1)));
    let params = Params {
        m: u32_of(m, "M")?,
        n: u32_of(n, "N")?,
        k: u32_of(k, "K")?,
        alpha: spec.alpha,
        k_chunk: u32_of(k_chunk, "K chunk")?,
        _pad: [0; 3],
    };
    let kern = match (kern, kernel) {
        (Some((name, source)), _) => {
            let bias_tag = if bias.is_some() { "-bias" } else { "" };
            let name = format!("matmul-{name}-{}{bias_tag}", layout.name());
            if bias.is_some() {
                // Only the bias variant declares it.
                constants.push(("RELU", flag(relu)));
            }
            Kernel::get_generated(dev, name, &*source, "matmul", &constants)
        }
        (None, MatmulKernel::Tiled) => Kernel::get(dev, &asgd_shaders::MATMUL_TILED, "matmul", &constants),
        (None, _) => Kernel::get(dev, &asgd_shaders::MATMUL, "matmul", &constants),
    };
    let groups = [gx as u32, gy as u32, splits as u32];
    if splits == 1 {
        return Ok(vec![match bias {
            Some(bias) => Dispatch::new(dev, kern, &params, &[c, a, b, bias], groups)?,
            None => Dispatch::new(dev, kern, &params, &[c, a, b], groups)?,
        }]);
    }
    debug_assert!(bias.is_none(), "a product with a bias is never split");
    let part = Tensor::empty(dev, &[splits, m, n], DType::F32)?;
    Ok(vec![Dispatch::new(dev, kern, &params, &[&part, a, b], groups)?, split_sum(dev, c, &part, spec)?])
}

/// `c = alpha * op(a) op(b) (+ c)` with `a` and `b` holding 16-bit floats, two to a `u32`
/// ([`pack_f16`]), and C in f32: the register kernel for `tile` widens each value as it loads
/// it and computes in f32, so the error added is the operands' rounding to f16 (about 2^-11 of
/// each value). Nothing in training uses it: it is for measuring what f16 operands cost in
/// accuracy and gain in speed. On a CPU driver a `vec4<f16>` load is one lane loop as a
/// `vec4<f32>` one is, so halving the bytes does not halve the cost there.
///
/// Errors: a device without `shader-f16`, or operands of the wrong size.
pub fn matmul_f16(
    dev: &Device,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    spec: MatmulSpec,
    tile: RegisterTile,
) -> Result<Vec<Dispatch>> {
    let MatmulSpec { m, n, k, .. } = spec;
    if !dev.has_f16() {
        return Err(EngineError::InvalidArgument(format!(
            "f16 matrix products need shader-f16, which {} lacks",
            dev.info().name
        )));
    }
    expect(c, "matmul output", m * n, DType::F32)?;
    expect(a, "f16 matmul left operand (u32 pairs)", (m * k).div_ceil(2), DType::U32)?;
    expect(b, "f16 matmul right operand (u32 pairs)", (k * n).div_ceil(2), DType::U32)?;
    let layout = MatmulLayout::for_shape(m, n, k, spec.trans_a, spec.trans_b);
    let constants = [("ACCUMULATE", flag(spec.accumulate)), ("SPLIT", 0.0)];
    let name = format!("matmul-{}-{}-f16", tile.name(), layout.name());
    let kern = Kernel::get_generated(dev, name, &|| register_matmul_f16_source(tile, layout), "matmul", &constants);
    let params = Params {
        m: u32_of(m, "M")?,
        n: u32_of(n, "N")?,
        k: u32_of(k, "K")?,
        alpha: spec.alpha,
        k_chunk: u32_of(k, "K chunk")?,
        _pad: [0; 3],
    };
    let groups = [n.div_ceil(tile.tile_cols() as usize) as u32, m.div_ceil(tile.tile_rows() as usize) as u32, 1];
    Ok(vec![Dispatch::new(dev, kern, &params, &[c, a, b], groups)?])
}

/// The IEEE binary16 bits nearest to `x` (ties to even; overflow to infinity).
pub fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    // Rounds `v >> shift` to nearest, ties to even; a carry into the exponent is correct.
    let round = |v: u32, shift: u32| {
        let (q, rem, half) = (v >> shift, v & ((1 << shift) - 1), 1 << (shift - 1));
        if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    };
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        return sign | round(man | 0x80_0000, (14 - e) as u32) as u16;
    }
    sign | round(((e as u32) << 23) | man, 13) as u16
}

/// The value of IEEE binary16 bits.
pub fn f16_value(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let (exp, man) = ((h >> 10) & 0x1f, (h & 0x3ff) as f32);
    sign * match exp {
        0 => man * 2f32.powi(-24),
        31 if man == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + man / 1024.0) * 2f32.powi(e as i32 - 15),
    }
}

/// `values` rounded to f16 and packed two to a `u32`, the first in the low half: the layout of
/// [`matmul_f16`]'s operands (upload with [`Tensor::from_u32`]).
pub fn pack_f16(values: &[f32]) -> Vec<u32> {
    values.chunks(2).map(|p| f16_bits(p[0]) as u32 | (p.get(1).map_or(0, |&v| f16_bits(v)) as u32) << 16).collect()
}

/// Adds the `(S, M, N)` partial products in `part` into `c` with the spec's alpha and
/// accumulation.
pub(crate) fn split_sum(dev: &Device, c: &Tensor, part: &Tensor, spec: MatmulSpec) -> Result<Dispatch> {
    let mn = spec.m * spec.n;
    let sp = SplitParams {
        mn: u32_of(mn, "M*N")?,
        splits: u32_of(part.numel() / mn.max(1), "splits")?,
        alpha: spec.alpha,
        accumulate: spec.accumulate as u32,
    };
    let sum = Kernel::get(dev, &asgd_shaders::MATMUL_SPLIT, "split_sum", &[]);
    Dispatch::new(dev, sum, &sp, &[c, part], grid_1d(mn, 256))
}

/// Terms of K per `matmul_kdot` workgroup at least (four per thread).
const KDOT_MIN_CHUNK: usize = 1024;

/// The `matmul_kdot` path: 4x4 output blocks, K shared by the threads of a workgroup and
/// split over enough workgroups to occupy the device, then [`split_sum`].
fn matmul_kdot(
    dev: &Device,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    spec: MatmulSpec,
    transposes: &[(&'static str, f64)],
) -> Result<Vec<Dispatch>> {
    let MatmulSpec { m, n, k, .. } = spec;
    let (gx, gy) = (n.div_ceil(4), m.div_ceil(4));
    let want = SPLIT_BELOW_GROUPS.div_ceil(gx * gy).min(k / KDOT_MIN_CHUNK).max(1);
    let chunk = k.div_ceil(want);
    let splits = k.div_ceil(chunk);
    let params = Params {
        m: u32_of(m, "M")?,
        n: u32_of(n, "N")?,
        k: u32_of(k, "K")?,
        alpha: 1.0,
        k_chunk: u32_of(chunk, "K chunk")?,
        _pad: [0; 3],
    };
    let kern = Kernel::get(dev, &asgd_shaders::MATMUL_KDOT, "matmul_kdot", transposes);
    let part = Tensor::empty(dev, &[splits, m, n], DType::F32)?;
    Ok(vec![
        Dispatch::new(dev, kern, &params, &[&part, a, b], [gx as u32, gy as u32, splits as u32])?,
        split_sum(dev, c, &part, spec)?,
    ])
}

/// The blocked kernel's layout for an (m, n) output: of 1..256 threads along the columns
/// (tiles from 1024x4 to 4x1024), the one that computes the fewest padded elements; among
/// equals the squarest. Convolutions produce thin products (6 or 16 rows by thousands of
/// columns) that a square 64x64 tile would mostly waste.
pub fn threads_along_columns(m: usize, n: usize) -> usize {
    let padded = |tx: usize| {
        let (rows, cols) = (4 * 256 / tx, 4 * tx);
        m.div_ceil(rows) * rows * n.div_ceil(cols) * cols
    };
    let squareness = |tx: usize| (tx as f64 / 16.0).log2().abs() as usize;
    [16, 8, 32, 4, 64, 2, 128, 1, 256].into_iter().min_by_key(|&tx| (padded(tx), squareness(tx))).expect("non-empty")
}

/// Elements a 256-thread register tile computes for an (m, n) output with the best layout.
fn padded_tile_area(m: usize, n: usize) -> usize {
    let tx = threads_along_columns(m, n);
    let (rows, cols) = (4 * 256 / tx, 4 * tx);
    m.div_ceil(rows) * rows * n.div_ceil(cols) * cols
}

/// True when `matmul_kdot` (threads share K, a 4x4 block per workgroup) should compute an
/// (m, n, k) product: the output is at least 4 times smaller than any register tile and K is
/// long enough to give each of 256 threads several terms.
pub fn use_kdot(m: usize, n: usize, k: usize) -> bool {
    k >= 1024 && padded_tile_area(m, n) >= 4 * m.div_ceil(4) * 4 * n.div_ceil(4) * 4
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
