//! Direct 2-D convolution kernels (no im2col matrix), written out for one geometry at a time.
//!
//! The im2col scheme of `conv2d.wgsl` writes every input value `KH * KW` times into a column
//! matrix and reads it back in a matrix product, and its backward pass does the same in reverse
//! (a permute, a product into a second column matrix, col2im). On a CPU driver (lavapipe) every
//! storage-buffer access is a loop over the SIMD lanes with a bounds check per lane (see
//! [`crate::register_matmul`]), so those copies cost more than the arithmetic. The kernels here
//! read the NCHW tensors in place and keep all reuse in registers:
//!
//! - [`conv_direct_source`], pass [`ConvPass::Forward`]: a thread computes `chans` output
//!   channels by `lines` output rows by `cols` consecutive output pixels of each row. For each
//!   input channel it loads the weights of every tap for its channels once (`chans / 4` `vec4`
//!   loads per tap from a (Cin*KH*KW, Cout4) copy of the weights, Cout padded to a multiple of 4
//!   with zeros so that `vec4` works for any Cout), then each of the `(lines - 1) * stride + KH`
//!   input rows its outputs need, `(cols - 1) * stride + KW` values of it (zero in the padding),
//!   once, and applies every tap that reaches one of its outputs to them.
//! - the same generator with [`ConvPass::InputGrad`]: `dx` gathers from `dy` with the same
//!   blocking. `dx[iy, ix]` takes tap `(ky, kx)` from `dy[(iy + pad - ky) / S, (ix + pad - kx) /
//!   S]` when both divide; with `lines` and `cols` multiples of the stride, which taps each of a
//!   thread's outputs takes is known when the kernel is generated, so no division is done per
//!   element.
//! - [`conv_weight_grad_source`]: `dW[o, c, ky, kx]`, a thread owning `rows` output channels by
//!   `chans` input channels by one kernel row (all `kx`) and one slice of the rows of the batch;
//!   the slices' partial sums are added in a fixed order by `matmul_split.wgsl`, so the result
//!   is deterministic.
//!
//! Kernel size, stride and padding are constants of the generated text: the loops over taps are
//! unrolled into named registers (WGSL cannot unroll over registers itself), and the offsets of
//! each tap within a thread's row are compile-time numbers.

use std::fmt::Write;

/// Which tensor a [`DirectConv`] kernel produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    /// `y` from `x` and the weights.
    Forward,
    /// `dx` from `dy` and the weights.
    InputGrad,
}

/// The geometry and blocking of one forward or input-gradient kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectConv {
    pub pass: ConvPass,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    /// Output channels per thread: a multiple of 4 from 4 to 32.
    pub chans: u32,
    /// Output rows per thread, 1 to 8; a multiple of the stride for [`ConvPass::InputGrad`].
    pub lines: u32,
    /// Consecutive output pixels of each row per thread, 1 to 32; a multiple of the stride
    /// for [`ConvPass::InputGrad`].
    pub cols: u32,
    /// Adds a per-channel bias (binding 4) to the output.
    pub bias: bool,
}

/// Threads per workgroup of the generated kernels. Small, so that a layer's few thousand
/// threads still make enough workgroups for every core of a CPU driver.
pub const CONV_WORKGROUP: u32 = 32;

/// Along one axis, for output `t` of a thread's run of `n` and tap `k`: the offset of the
/// source value it reads within the thread's loaded span, or `None` when the tap does not reach
/// that output (only in the input gradient at stride > 1). Also returns the span's first index
/// relative to the thread's base (see the generated `col0` and `row0`).
fn axis_taps(pass: ConvPass, n: u32, taps: u32, stride: u32, pad: u32) -> (i64, Vec<Vec<Option<usize>>>) {
    let (s, p) = (stride as i64, pad as i64);
    let raw = |t: i64, k: i64| -> Option<i64> {
        match pass {
            ConvPass::Forward => Some(t * s + k),
            ConvPass::InputGrad => {
                let r = t + p - k;
                (r.rem_euclid(s) == 0).then(|| r.div_euclid(s))
            }
        }
    };
    let all: Vec<i64> = (0..n as i64).flat_map(|t| (0..taps as i64).filter_map(move |k| raw(t, k))).collect();
    let min = all.iter().copied().min().unwrap_or(0);
    let offs =
        (0..n as i64).map(|t| (0..taps as i64).map(|k| raw(t, k).map(|o| (o - min) as usize)).collect()).collect();
    (min, offs)
}

impl DirectConv {
    /// True when the fields are in range.
    pub fn is_valid(&self) -> bool {
        let s = self.stride.max(1);
        let stride_ok = self.pass == ConvPass::Forward || (self.cols.is_multiple_of(s) && self.lines.is_multiple_of(s));
        self.kh >= 1
            && self.kw >= 1
            && self.stride >= 1
            && self.chans.is_multiple_of(4)
            && (4..=32).contains(&self.chans)
            && (1..=8).contains(&self.lines)
            && (1..=32).contains(&self.cols)
            && stride_ok
    }

    /// A name that identifies the generated source, such as `conv-f-k3x3s1p1-c16l2t8b`.
    pub fn name(&self) -> String {
        let pass = match self.pass {
            ConvPass::Forward => "f",
            ConvPass::InputGrad => "dx",
        };
        format!(
            "conv-{pass}-k{}x{}s{}p{}-c{}l{}t{}{}",
            self.kh,
            self.kw,
            self.stride,
            self.pad,
            self.chans,
            self.lines,
            self.cols,
            if self.bias { "b" } else { "" }
        )
    }

    /// [`axis_taps`] along a row.
    fn taps(&self) -> (i64, Vec<Vec<Option<usize>>>) {
        axis_taps(self.pass, self.cols, self.kw, self.stride, self.pad)
    }

    /// [`axis_taps`] down a column.
    fn row_taps(&self) -> (i64, Vec<Vec<Option<usize>>>) {
        axis_taps(self.pass, self.lines, self.kh, self.stride, self.pad)
    }
}

/// The WGSL of a forward or input-gradient kernel; entry point `conv`.
///
/// Bindings: the uniform block, the output (B, Cout, OH, OW), the source (B, Cin, H, W) and the
/// weights as `vec4` rows (Cin*KH*KW, Cout4), then the bias (Cout) with `bias`. The forward
/// kernel has an override constant `RELU` that applies `max(y, 0)` in its store. For the input
/// gradient "source" is `dy` and "output" is `dx`: Cin is the layer's Cout and the other way
/// round. One thread per (image, channel block, row block, column block); grid
/// `grid_1d(n, CONV_WORKGROUP)`.
///
/// Per source channel a thread loads the weights of every tap for its channels once, then each
/// source row its outputs need once, and applies every (row tap, column tap) pair to it:
/// loads fall as the rows, columns and channels per thread grow.
// Index loops read best here: the indices name registers in the generated text.
#[allow(clippy::needless_range_loop)]
pub fn conv_direct_source(k: DirectConv) -> String {
    assert!(k.is_valid(), "invalid direct convolution {k:?}");
    let DirectConv { pass, kh, kw, stride: s, pad, chans, lines, cols, bias } = k;
    let (groups, cols_n, lines_n) = ((chans / 4) as usize, cols as usize, lines as usize);
    let (cmin, coffs) = k.taps();
    let (rmin, roffs) = k.row_taps();
    let span = |offs: &Vec<Vec<Option<usize>>>| offs.iter().flatten().flatten().max().map_or(0, |m| m + 1);
    let (cspan, rspan) = (span(&coffs), span(&roffs));
    let cused: Vec<bool> = (0..cspan).map(|j| coffs.iter().flatten().any(|o| *o == Some(j))).collect();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "// Generated: {}.", k.name());
    let _ = writeln!(
        w,
        "struct Params {{ batch: u32, cin: u32, h: u32, w: u32, cout: u32, cout4: u32, oh: u32, ow: u32,
    col_blocks: u32, row_blocks: u32, chan_blocks: u32, n: u32, }}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;"
    );
    if bias {
        let _ = writeln!(w, "@group(0) @binding(4) var<storage, read> bias: array<f32>;");
    }
    let forward = pass == ConvPass::Forward;
    if forward {
        // The forward pass applies a ReLU that follows it where RELU is set.
        let _ = writeln!(w, "override RELU: bool = false;");
        let _ = writeln!(w, "fn store(v: f32) -> f32 {{ return select(v, max(v, 0.0), RELU); }}");
    }
    let wg = CONV_WORKGROUP;
    let _ = writeln!(
        w,
        "@compute @workgroup_size({wg})
fn conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{
    let i = gid.x + gid.y * nwg.x * {wg}u;
    if (i >= p.n) {{ return; }}
    // Consecutive threads take consecutive column blocks of one row block and channel block:
    // they load neighbouring inputs and the same weights.
    let cb = i % p.col_blocks;
    let r1 = i / p.col_blocks;
    let rb = r1 % p.row_blocks;
    let r2 = r1 / p.row_blocks;
    let ob = r2 % p.chan_blocks;
    let b = r2 / p.chan_blocks;
    let v0 = cb * {cols}u;
    let u0 = rb * {lines}u;
    let og = ob * {groups}u;
    let wlast = i32(p.w) - 1;"
    );
    match pass {
        ConvPass::Forward => {
            let _ = writeln!(w, "    let col0 = i32(v0 * {s}u) - {pad} + ({cmin});");
            let _ = writeln!(w, "    let row0 = i32(u0 * {s}u) - {pad} + ({rmin});");
        }
        ConvPass::InputGrad => {
            // v0 and u0 are multiples of the stride, so these divisions are exact.
            let _ = writeln!(w, "    let col0 = i32(cb * {}u) + ({cmin});", cols / s);
            let _ = writeln!(w, "    let row0 = i32(rb * {}u) + ({rmin});", lines / s);
        }
    }
    // The span's columns, clamped into the row, and whether each is inside it.
    for j in (0..cspan).filter(|&j| cused[j]) {
        let _ = writeln!(w, "    let cj{j} = col0 + {j};");
        let _ = writeln!(w, "    let xc{j} = u32(clamp(cj{j}, 0, wlast));");
        let _ = writeln!(w, "    let xm{j} = cj{j} >= 0 && cj{j} <= wlast;");
    }
    for l in 0..lines_n {
        for t in 0..cols_n {
            for g in 0..groups {
                let _ = writeln!(w, "    var a{l}_{t}_{g} = vec4<f32>(0.0);");
            }
        }
    }
    let _ = writeln!(w, "    for (var c = 0u; c < p.cin; c++) {{");
    let _ = writeln!(w, "        let xplane = (b * p.cin + c) * p.h;");
    let _ = writeln!(w, "        let wb = c * {}u * p.cout4 + og;", kh * kw);
    let tap_used =
        |ky: usize, kx: usize| roffs.iter().any(|r| r[ky].is_some()) && coffs.iter().any(|c| c[kx].is_some());
    for ky in 0..kh as usize {
        for kx in 0..kw as usize {
            if tap_used(ky, kx) {
                for g in 0..groups {
                    let _ = writeln!(
                        w,
                        "        let w{ky}_{kx}_{g} = wt[wb + {}u * p.cout4 + {g}u];",
                        ky * kw as usize + kx
                    );
                }
            }
        }
    }
    for rr in 0..rspan {
        let pairs: Vec<(usize, usize)> = (0..lines_n)
            .flat_map(|l| (0..kh as usize).map(move |ky| (l, ky)))
            .filter(|&(l, ky)| roffs[l][ky] == Some(rr))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let _ = writeln!(w, "        {{");
        let _ = writeln!(w, "            let ry = row0 + {rr};");
        let _ = writeln!(w, "            if (ry >= 0 && ry < i32(p.h)) {{");
        let _ = writeln!(w, "                let xrow = (xplane + u32(ry)) * p.w;");
        for j in (0..cspan).filter(|&j| cused[j]) {
            let _ = writeln!(w, "                let x{j} = select(0.0, x[xrow + xc{j}], xm{j});");
        }
        for &(l, ky) in &pairs {
            for t in 0..cols_n {
                for kx in 0..kw as usize {
                    if let Some(j) = coffs[t][kx] {
                        for g in 0..groups {
                            let _ = writeln!(
                                w,
                                "                a{l}_{t}_{g} = fma(vec4<f32>(x{j}), w{ky}_{kx}_{g}, a{l}_{t}_{g});"
                            );
                        }
                    }
                }
            }
        }
        let _ = writeln!(w, "            }}");
        let _ = writeln!(w, "        }}");
    }
    let _ = writeln!(w, "    }}");
    for g in 0..groups {
        for e in 0..4 {
            let _ = writeln!(w, "    {{");
            let _ = writeln!(w, "        let o = (og + {g}u) * 4u + {e}u;");
            let _ = writeln!(w, "        if (o < p.cout) {{");
            let bv = if bias { " + bias[o]" } else { "" };
            for l in 0..lines_n {
                let _ = writeln!(w, "            if (u0 + {l}u < p.oh) {{");
                let _ = writeln!(w, "                let yb = ((b * p.cout + o) * p.oh + u0 + {l}u) * p.ow + v0;");
                for t in 0..cols_n {
                    let value = format!("a{l}_{t}_{g}.{}{bv}", COMP[e]);
                    let value = if forward { format!("store({value})") } else { value };
                    let _ = writeln!(w, "                if (v0 + {t}u < p.ow) {{ y[yb + {t}u] = {value}; }}");
                }
                let _ = writeln!(w, "            }}");
            }
            let _ = writeln!(w, "        }}");
            let _ = writeln!(w, "    }}");
        }
    }
    let _ = writeln!(w, "}}");
    out
}

const COMP: [char; 4] = ['x', 'y', 'z', 'w'];

/// The geometry and blocking of one weight-gradient kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectWeightGrad {
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    /// Output channels per thread: a multiple of 4 from 4 to 16.
    pub rows: u32,
    /// Input channels per thread, 1 to 8.
    pub chans: u32,
    /// Output pixels of a row taken per step, 1 to 16; a multiple of 4 with `vec_dy`.
    pub cols: u32,
    /// `dy` is read as `vec4`: needs OW % 4 == 0.
    pub vec_dy: bool,
}

impl DirectWeightGrad {
    /// True when the fields are in range.
    pub fn is_valid(&self) -> bool {
        self.kh >= 1
            && self.kw >= 1
            && self.stride >= 1
            && self.rows.is_multiple_of(4)
            && (4..=16).contains(&self.rows)
            && (1..=8).contains(&self.chans)
            && (1..=16).contains(&self.cols)
            && (!self.vec_dy || self.cols.is_multiple_of(4))
    }

    /// A name that identifies the generated source, such as `conv-dw-k3x3s1p1-r8c4t8v`.
    pub fn name(&self) -> String {
        format!(
            "conv-dw-k{}x{}s{}p{}-r{}c{}t{}{}",
            self.kh,
            self.kw,
            self.stride,
            self.pad,
            self.rows,
            self.chans,
            self.cols,
            if self.vec_dy { "v" } else { "s" }
        )
    }
}

/// The WGSL of a weight-gradient kernel; entry point `conv_dw`.
///
/// Bindings: the uniform block, the partial sums (slices, Cout*Cin*KH*KW), `dy` (B, Cout, OH,
/// OW, as `vec4` with `vec_dy`) and `x` (B, Cin, H, W). Thread `i` owns block `i % blocks`
/// (output-channel block, input-channel block, kernel row) of slice `i / blocks`, a run of
/// `rows_per_slice` consecutive (image, output row) pairs; grid `grid_1d(n, CONV_WORKGROUP)`.
// Index loops read best here: the indices name registers in the generated text.
#[allow(clippy::needless_range_loop)]
pub fn conv_weight_grad_source(k: DirectWeightGrad) -> String {
    assert!(k.is_valid(), "invalid weight-gradient kernel {k:?}");
    let DirectWeightGrad { kh, kw, stride: s, pad, rows, chans, cols, vec_dy } = k;
    let (ro, cc, t_n, kw_n, groups) = (rows as usize, chans as usize, cols as usize, kw as usize, (rows / 4) as usize);
    let span = (t_n - 1) * s as usize + kw_n;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "// Generated: {}.", k.name());
    let _ = writeln!(
        w,
        "struct Params {{ batch: u32, cin: u32, h: u32, w: u32, cout: u32, oh: u32, ow: u32, o_blocks: u32,
    c_blocks: u32, blocks: u32, rows_per_slice: u32, total_rows: u32, n: u32, nw: u32, _pad0: u32, _pad1: u32, }}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<{}>;
@group(0) @binding(3) var<storage, read> x: array<f32>;",
        if vec_dy { "vec4<f32>" } else { "f32" }
    );
    let wg = CONV_WORKGROUP;
    let _ = writeln!(
        w,
        "@compute @workgroup_size({wg})
fn conv_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{
    let i = gid.x + gid.y * nwg.x * {wg}u;
    if (i >= p.n) {{ return; }}
    let blk = i % p.blocks;
    let z = i / p.blocks;
    let ky = blk % {kh}u;
    let r1 = blk / {kh}u;
    let cbk = r1 % p.c_blocks;
    let obk = r1 / p.c_blocks;
    let o0 = obk * {rows}u;
    let c0 = cbk * {chans}u;
    let wlast = i32(p.w) - 1;
    let ow4 = p.ow / 4u;
    _ = ow4;"
    );
    // Channels past the end are clamped for the loads; their sums are not stored.
    for r in 0..ro {
        let _ = writeln!(w, "    let oc{r} = min(o0 + {r}u, p.cout - 1u);");
    }
    for q in 0..cc {
        let _ = writeln!(w, "    let cc{q} = min(c0 + {q}u, p.cin - 1u);");
    }
    for q in 0..cc {
        for kx in 0..kw_n {
            for g in 0..groups {
                let _ = writeln!(w, "    var a{q}_{kx}_{g} = vec4<f32>(0.0);");
            }
        }
    }
    let _ = writeln!(
        w,
        "    let row_begin = z * p.rows_per_slice;
    let row_end = min(p.total_rows, row_begin + p.rows_per_slice);
    var b = row_begin / p.oh;
    var oy = row_begin % p.oh;
    for (var row = row_begin; row < row_end; row++) {{
        let iy = i32(oy * {s}u + ky) - {pad};
        if (iy >= 0 && iy < i32(p.h)) {{"
    );
    for r in 0..ro {
        let _ = writeln!(w, "            let db{r} = ((b * p.cout + oc{r}) * p.oh + oy) * p.ow;");
    }
    for q in 0..cc {
        let _ = writeln!(w, "            let xb{q} = ((b * p.cin + cc{q}) * p.h + u32(iy)) * p.w;");
    }
    let _ = writeln!(w, "            for (var ox0 = 0u; ox0 < p.ow; ox0 += {cols}u) {{");
    // dy of the step's pixels, zero past the end of the row (the loads stay inside it).
    if vec_dy {
        for q4 in 0..t_n / 4 {
            let _ = writeln!(w, "                let dm{q4} = ox0 + {}u < p.ow;", 4 * q4);
            let _ = writeln!(w, "                let di{q4} = min(ox0 / 4u + {q4}u, ow4 - 1u);");
        }
        for r in 0..ro {
            for q4 in 0..t_n / 4 {
                let _ = writeln!(
                    w,
                    "                let dv{r}_{q4} = select(vec4<f32>(0.0), dy[db{r} / 4u + di{q4}], dm{q4});"
                );
            }
        }
    } else {
        for t in 0..t_n {
            let _ = writeln!(w, "                let dm{t} = ox0 + {t}u < p.ow;");
            let _ = writeln!(w, "                let di{t} = min(ox0 + {t}u, p.ow - 1u);");
        }
        for r in 0..ro {
            for t in 0..t_n {
                let _ = writeln!(w, "                let d{r}_{t} = select(0.0, dy[db{r} + di{t}], dm{t});");
            }
        }
    }
    let dval = |r: usize, t: usize| {
        if vec_dy {
            format!("dv{r}_{}.{}", t / 4, COMP[t % 4])
        } else {
            format!("d{r}_{t}")
        }
    };
    let _ = writeln!(w, "                let col0 = i32(ox0 * {s}u) - {pad};");
    for j in 0..span {
        let _ = writeln!(w, "                let cj{j} = col0 + {j};");
        let _ = writeln!(w, "                let xc{j} = u32(clamp(cj{j}, 0, wlast));");
        let _ = writeln!(w, "                let xm{j} = cj{j} >= 0 && cj{j} <= wlast;");
        for q in 0..cc {
            let _ = writeln!(w, "                let x{q}_{j} = select(0.0, x[xb{q} + xc{j}], xm{j});");
        }
    }
    for t in 0..t_n {
        for g in 0..groups {
            let parts: Vec<String> = (0..4).map(|e| dval(4 * g + e, t)).collect();
            let _ = writeln!(w, "                let e{t}_{g} = vec4<f32>({});", parts.join(", "));
        }
        for q in 0..cc {
            for kx in 0..kw_n {
                let j = t * s as usize + kx;
                for g in 0..groups {
                    let _ = writeln!(
                        w,
                        "                a{q}_{kx}_{g} = fma(vec4<f32>(x{q}_{j}), e{t}_{g}, a{q}_{kx}_{g});"
                    );
                }
            }
        }
    }
    let _ = writeln!(
        w,
        "            }}
        }}
        oy++;
        if (oy == p.oh) {{ oy = 0u; b++; }}
    }}
    let pz = z * p.nw;"
    );
    for q in 0..cc {
        for g in 0..groups {
            for e in 0..4 {
                let _ = writeln!(w, "    {{");
                let _ = writeln!(w, "        let o = o0 + {}u;", 4 * g + e);
                let _ = writeln!(w, "        let c = c0 + {q}u;");
                let _ = writeln!(w, "        if (o < p.cout && c < p.cin) {{");
                let _ = writeln!(w, "            let wi = ((o * p.cin + c) * {kh}u + ky) * {kw}u;");
                for kx in 0..kw_n {
                    let _ = writeln!(w, "            part[pz + wi + {kx}u] = a{q}_{kx}_{g}.{};", COMP[e]);
                }
                let _ = writeln!(w, "        }}");
                let _ = writeln!(w, "    }}");
            }
        }
    }
    let _ = writeln!(w, "}}");
    out
}

/// The kernel that lays the weights (Cout, Cin, KH, KW) out for the direct kernels; entry point
/// `conv_weight_layout`, one thread per output element, grid `grid_1d(n, 256)`.
///
/// With `input_grad == 0` it writes `(Cin*KH*KW, Cout4)` for the forward pass, else
/// `(Cout*KH*KW, Cin4)` for the input gradient; the channel axis is padded with zeros to a
/// multiple of 4 (`jp`), so that the direct kernels read a tap's channels as `vec4` whatever the
/// channel count. It runs once per step on a few thousand values.
pub const CONV_WEIGHT_LAYOUT: &str = "
struct Params { cin: u32, cout: u32, kk: u32, jp: u32, n: u32, input_grad: u32, _pad0: u32, _pad1: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@compute @workgroup_size(256)
fn conv_weight_layout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let j = i % p.jp;
    let r = i / p.jp;
    let k = r % p.kk;
    let outer = r / p.kk;
    var v = 0.0;
    if (p.input_grad == 0u) {
        if (j < p.cout) { v = src[(j * p.cin + outer) * p.kk + k]; }
    } else {
        if (j < p.cin) { v = src[(outer * p.cin + j) * p.kk + k]; }
    }
    dst[i] = v;
}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_gradient_taps_follow_the_stride() {
        // Stride 2, pad 1, 3 taps: even pixels take the middle tap, odd ones the outer two.
        let k = DirectConv {
            pass: ConvPass::InputGrad,
            kh: 3,
            kw: 3,
            stride: 2,
            pad: 1,
            chans: 4,
            lines: 2,
            cols: 4,
            bias: false,
        };
        let (min, offs) = k.taps();
        assert_eq!(min, 0);
        assert_eq!(offs[0], vec![None, Some(0), None]);
        assert_eq!(offs[1], vec![Some(1), None, Some(0)]);
        assert_eq!(offs[3], vec![Some(2), None, Some(1)]);
        let f = DirectConv { pass: ConvPass::Forward, ..k };
        assert_eq!(f.taps().1[1], vec![Some(2), Some(3), Some(4)]);
        assert!(!DirectConv { cols: 3, ..k }.is_valid(), "input gradient needs cols % stride == 0");
    }
}
