//! The register-blocked matrix product, written out for one block shape at a time.
//!
//! `C = alpha * op(A) op(B) (+ C)` with the contract of `matmul.wgsl` (same bindings, uniform
//! block, override constants `ACCUMULATE` and `SPLIT`), but each thread computes a `rows x cols`
//! block of C (up to 32x32) and the loop body is generated rather than written by hand: WGSL has
//! no way to unroll a loop over registers, and a private array indexed in a loop lives in memory
//! on CPU drivers.
//!
//! Why blocks this large: on a CPU driver (lavapipe) every storage-buffer load is a loop over the
//! SIMD lanes with a bounds check per lane, so a product costs in proportion to the values it
//! loads, and a thread that loads `rows + cols` values per step of K for `rows * cols`
//! multiply-adds gets faster the larger its block. On GPUs large blocks spill registers; there
//! the tuner keeps the small ones or the workgroup-memory kernel.
//!
//! Operands are read as `vec4` where their layout allows it (four consecutive values along the
//! fast axis and that axis a multiple of 4), which shares one lane loop among four values, else
//! as scalars. K advances four at a time, with a scalar tail for the last `K % 4` steps.

use std::fmt::Write;

/// The shape of one generated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterTile {
    /// Rows of C per thread: a multiple of 4 from 4 to 32.
    pub rows: u32,
    /// Columns of C per thread: a multiple of 4 from 4 to 32.
    pub cols: u32,
    /// Threads per workgroup: a power of two from 1 to 256.
    pub threads: u32,
    /// Threads along the columns of C: a power of two that divides `threads`.
    pub threads_x: u32,
}

impl RegisterTile {
    /// Rows of C one workgroup covers.
    pub fn tile_rows(&self) -> u32 {
        self.threads / self.threads_x * self.rows
    }

    /// Columns of C one workgroup covers.
    pub fn tile_cols(&self) -> u32 {
        self.threads_x * self.cols
    }

    /// True when the fields are in range.
    pub fn is_valid(&self) -> bool {
        let block = |v: u32| v.is_multiple_of(4) && (4..=32).contains(&v);
        block(self.rows)
            && block(self.cols)
            && self.threads.is_power_of_two()
            && self.threads <= 256
            && self.threads_x.is_power_of_two()
            && self.threads.is_multiple_of(self.threads_x)
    }

    /// A short name, `r32x16w64x8`: block rows x columns, threads x threads along columns.
    pub fn name(&self) -> String {
        format!("r{}x{}w{}x{}", self.rows, self.cols, self.threads, self.threads_x)
    }

    /// Parses [`RegisterTile::name`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('r')?;
        let (block, threads) = rest.split_once('w')?;
        let (rows, cols) = block.split_once('x')?;
        let (threads, threads_x) = threads.split_once('x')?;
        let t = RegisterTile {
            rows: rows.parse().ok()?,
            cols: cols.parse().ok()?,
            threads: threads.parse().ok()?,
            threads_x: threads_x.parse().ok()?,
        };
        t.is_valid().then_some(t)
    }
}

/// The operand layouts one generated kernel is specialised for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MatmulLayout {
    /// A is stored (K, M) rather than (M, K).
    pub trans_a: bool,
    /// B is stored (N, K) rather than (K, N).
    pub trans_b: bool,
    /// A is read as `vec4`: needs K % 4 == 0 (or M % 4 == 0 with `trans_a`).
    pub vec_a: bool,
    /// B is read as `vec4`: needs N % 4 == 0 (or K % 4 == 0 with `trans_b`).
    pub vec_b: bool,
}

impl MatmulLayout {
    /// The layout for an (m, n, k) product: `vec4` reads wherever the shape allows them.
    pub fn for_shape(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
        let vec_a = if trans_a { m.is_multiple_of(4) } else { k.is_multiple_of(4) };
        let vec_b = if trans_b { k.is_multiple_of(4) } else { n.is_multiple_of(4) };
        Self { trans_a, trans_b, vec_a, vec_b }
    }

    /// A short name for labels and cache keys, such as `tn-v4s`.
    pub fn name(&self) -> String {
        let t = |b: bool| if b { 't' } else { 'n' };
        let v = |b: bool| if b { "v" } else { "s" };
        format!("{}{}-{}{}", t(self.trans_a), t(self.trans_b), v(self.vec_a), v(self.vec_b))
    }
}

const COMP: [char; 4] = ['x', 'y', 'z', 'w'];

/// The WGSL source of the kernel for `tile` and `layout`; entry point `matmul`.
///
/// Grid: `(ceil(N / tile_cols), ceil(M / tile_rows), splits)`.
pub fn register_matmul_source(tile: RegisterTile, layout: MatmulLayout) -> String {
    assert!(tile.is_valid(), "invalid register tile {tile:?}");
    generate(tile, layout, Variant::default())
}

/// [`register_matmul_source`] with a per-column bias added in the store:
/// `C = alpha * op(A) op(B) (+ C) + bias` with `bias` (N) at binding 4, and with the override
/// constant `RELU` set, `C = max(C, 0)` in the same store. A separate kernel
/// rather than a flag, because wgpu derives a pipeline's bindings from the bindings its entry
/// point uses, and the products without bias keep their four. Never split along K (each
/// split would add the bias).
pub fn register_matmul_bias_source(tile: RegisterTile, layout: MatmulLayout) -> String {
    assert!(tile.is_valid(), "invalid register tile {tile:?}");
    generate(tile, layout, Variant { bias: true, ..Variant::default() })
}

/// [`register_matmul_source`] with A and B stored as 16-bit floats (`array<f16>`, or
/// `array<vec4<f16>>` where the layout reads `vec4`), widened to f32 as they are loaded: the
/// products and sums stay in f32, so the only error added is the rounding of the operands to
/// f16. Needs a device with `shader-f16`. Never split along K.
pub fn register_matmul_f16_source(tile: RegisterTile, layout: MatmulLayout) -> String {
    assert!(tile.is_valid(), "invalid register tile {tile:?}");
    generate(tile, layout, Variant { f16: true, ..Variant::default() })
}

/// Wraps every load `arr[...]` in `text` (where `arr` is a whole identifier) in `conv(...)`,
/// so that the generator can write its loads once for f32 and f16 operands alike.
fn widen_loads(text: &str, arr: &str, conv: &str) -> String {
    let open = format!("{arr}[");
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut rest = text;
    while let Some(at) = rest.find(&open) {
        let boundary = rest[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !boundary {
            out.push_str(&rest[..at + open.len()]);
            rest = &rest[at + open.len()..];
            continue;
        }
        let body = &rest[at + open.len()..];
        let mut depth = 1;
        let end = body
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '[' => 1,
                    ']' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("unbalanced brackets in generated WGSL");
        out.push_str(&rest[..at]);
        out.push_str(&format!("{conv}({arr}[{}])", &body[..end]));
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// What one generated kernel adds to the plain register-blocked product.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Variant {
    /// Adds `bias[col]` in the store (binding 4).
    pub bias: bool,
    /// Lanes per subgroup when the lanes of a subgroup share their loads of A
    /// ([`crate::subgroup_matmul`]).
    pub share_a: Option<u32>,
    /// A and B hold 16-bit floats.
    pub f16: bool,
}

// Index loops read best here: the indices name registers in the generated text.
#[allow(clippy::needless_range_loop)]
pub(crate) fn generate(tile: RegisterTile, layout: MatmulLayout, variant: Variant) -> String {
    let RegisterTile { rows: br, cols: bc, threads, threads_x } = tile;
    let MatmulLayout { trans_a: ta, trans_b: tb, vec_a, vec_b } = layout;
    let (br, bc) = (br as usize, bc as usize);
    let ty = threads / threads_x;
    let ty_ = |v: bool| match (v, variant.f16) {
        (true, false) => "vec4<f32>",
        (false, false) => "f32",
        (true, true) => "vec4<f16>",
        (false, true) => "f16",
    };
    let mut s = String::new();
    let w = &mut s;
    if variant.f16 {
        let _ = writeln!(w, "enable f16;");
    }
    let _ = writeln!(w, "// Generated: {} block per thread, layout {}, {variant:?}.", tile.name(), layout.name());
    let _ = writeln!(
        w,
        "override ACCUMULATE: bool = false;
override SPLIT: bool = false;
struct Params {{ m: u32, n: u32, k: u32, alpha: f32, k_chunk: u32, _pad0: u32, _pad1: u32, _pad2: u32, }}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<{}>;
@group(0) @binding(3) var<storage, read> b: array<{}>;",
        ty_(vec_a),
        ty_(vec_b)
    );
    if variant.bias {
        let _ = writeln!(w, "@group(0) @binding(4) var<storage, read> bias: array<f32>;");
        let _ = writeln!(w, "override RELU: bool = false;");
    }
    // The bias variant's store takes the four columns' bias values, and applies a fused ReLU
    // where RELU is set.
    let (bias_param, bias_term) = if variant.bias { (", bv: vec4<f32>", " + bv[j]") } else { ("", "") };
    let relu = if variant.bias { "out = select(out, max(out, 0.0), RELU);" } else { "" };
    // Where lanes share A, a thread's place comes from its subgroup and lane, so that the
    // lanes of one subgroup hold one block row whatever order the driver numbers them in.
    let (thread_args, thread_id) = match variant.share_a {
        Some(lanes) => (
            "@builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32",
            format!("let t = sg * {lanes}u + lane;"),
        ),
        None => ("@builtin(local_invocation_index) t: u32", String::new()),
    };
    // Scalar element access for the K tail, whatever the binding's element type.
    let a_idx = if ta { "kk * p.m + row" } else { "row * p.k + kk" };
    let b_idx = if tb { "col * p.k + kk" } else { "kk * p.n + col" };
    let elem = |v: bool, arr: &str| {
        if v {
            format!("{arr}[i >> 2u][i & 3u]")
        } else {
            format!("{arr}[i]")
        }
    };
    let _ = writeln!(
        w,
        "fn a_el(row: u32, kk: u32) -> f32 {{ let i = {a_idx}; return {}; }}
fn b_el(kk: u32, col: u32) -> f32 {{ let i = {b_idx}; return {}; }}
fn put(row: u32, c0: u32, v: vec4<f32>, slice: u32{bias_param}) {{
    if (row >= p.m) {{ return; }}
    for (var j = 0u; j < 4u; j++) {{
        let col = c0 + j;
        if (col >= p.n) {{ return; }}
        let idx = row * p.n + col;
        if (SPLIT) {{
            c[slice * p.m * p.n + idx] = v[j];
            continue;
        }}
        var out = p.alpha * v[j];
        if (ACCUMULATE) {{ out = out + c[idx]; }}
        out = out{bias_term};
        {relu}
        c[idx] = out;
    }}
}}
@compute @workgroup_size({threads})
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, {thread_args}) {{
    {thread_id}
    let r0 = (wg.y * {ty}u + t / {threads_x}u) * {br}u;
    let c0 = (wg.x * {threads_x}u + t % {threads_x}u) * {bc}u;
    let lr = p.m - 1u;
    let lc = p.n - 1u;
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    var k_begin = 0u;
    var k_end = p.k;
    if (SPLIT) {{
        k_begin = wg.z * p.k_chunk;
        k_end = min(p.k, k_begin + p.k_chunk);
    }}",
        elem(vec_a, "a"),
        elem(vec_b, "b")
    );
    // Per-thread base offsets, rows and columns clamped so that loads stay in range.
    match (vec_a, ta) {
        (true, false) => (0..br).for_each(|i| {
            let _ = writeln!(w, "    let ra{i} = min(r0 + {i}u, lr) * k4;");
        }),
        (true, true) => (0..br / 4).for_each(|g| {
            let _ = writeln!(w, "    let ra{g} = min(r0 / 4u + {g}u, m4 - 1u);");
        }),
        (false, false) => (0..br).for_each(|i| {
            let _ = writeln!(w, "    let ra{i} = min(r0 + {i}u, lr) * p.k;");
        }),
        (false, true) => (0..br).for_each(|i| {
            let _ = writeln!(w, "    let ra{i} = min(r0 + {i}u, lr);");
        }),
    }
    match (vec_b, tb) {
        (true, true) => (0..bc).for_each(|j| {
            let _ = writeln!(w, "    let cb{j} = min(c0 + {j}u, lc) * k4;");
        }),
        (true, false) => (0..bc / 4).for_each(|g| {
            let _ = writeln!(w, "    let cb{g} = min(c0 / 4u + {g}u, n4 - 1u);");
        }),
        (false, true) => (0..bc).for_each(|j| {
            let _ = writeln!(w, "    let cb{j} = min(c0 + {j}u, lc) * p.k;");
        }),
        (false, false) => (0..bc).for_each(|j| {
            let _ = writeln!(w, "    let cb{j} = min(c0 + {j}u, lc);");
        }),
    }
    // Unused strides would be dead code, which is fine; naga and drivers drop it.
    let _ = writeln!(w, "    _ = m4; _ = n4; _ = k4;");
    for i in 0..br {
        for g in 0..bc / 4 {
            let _ = writeln!(w, "    var acc{i}_{g} = vec4<f32>(0.0);");
        }
    }
    // Main loop: four steps of K per iteration. k_begin is a multiple of 16 with SPLIT.
    let _ = writeln!(w, "    let q_end = k_begin / 4u + (k_end - k_begin) / 4u;");
    let _ = writeln!(w, "    for (var q = k_begin / 4u; q < q_end; q++) {{");
    let _ = writeln!(w, "        let k0 = 4u * q;");
    // a_val(i, kk) and b_vec(kk, g) name WGSL expressions after the loads below.
    let a_val: Box<dyn Fn(usize, usize) -> String> = if let Some(lanes) = variant.share_a {
        crate::subgroup_matmul::shared_a_loads(w, br, layout, lanes)
    } else {
        match (vec_a, ta) {
            (true, false) => {
                (0..br).for_each(|i| {
                    let _ = writeln!(w, "        let av{i} = a[ra{i} + q];");
                });
                Box::new(|i, kk| format!("av{i}.{}", COMP[kk]))
            }
            (true, true) => {
                for kk in 0..4 {
                    for g in 0..br / 4 {
                        let _ = writeln!(w, "        let av{kk}_{g} = a[(k0 + {kk}u) * m4 + ra{g}];");
                    }
                }
                Box::new(|i, kk| format!("av{kk}_{}.{}", i / 4, COMP[i % 4]))
            }
            (false, false) => {
                for i in 0..br {
                    for kk in 0..4 {
                        let _ = writeln!(w, "        let av{i}_{kk} = a[ra{i} + k0 + {kk}u];");
                    }
                }
                Box::new(|i, kk| format!("av{i}_{kk}"))
            }
            (false, true) => {
                for i in 0..br {
                    for kk in 0..4 {
                        let _ = writeln!(w, "        let av{i}_{kk} = a[ra{i} + (k0 + {kk}u) * p.m];");
                    }
                }
                Box::new(|i, kk| format!("av{i}_{kk}"))
            }
        }
    };
    match (vec_b, tb) {
        (true, false) => {
            for kk in 0..4 {
                for g in 0..bc / 4 {
                    let _ = writeln!(w, "        let bv{kk}_{g} = b[(k0 + {kk}u) * n4 + cb{g}];");
                }
            }
        }
        (true, true) => {
            (0..bc).for_each(|j| {
                let _ = writeln!(w, "        let bt{j} = b[cb{j} + q];");
            });
            for kk in 0..4 {
                for g in 0..bc / 4 {
                    let parts: Vec<String> = (0..4).map(|jj| format!("bt{}.{}", 4 * g + jj, COMP[kk])).collect();
                    let _ = writeln!(w, "        let bv{kk}_{g} = vec4<f32>({});", parts.join(", "));
                }
            }
        }
        (false, _) => {
            let at = |kk: usize, j: usize| {
                if tb {
                    format!("b[cb{j} + k0 + {kk}u]")
                } else {
                    format!("b[cb{j} + (k0 + {kk}u) * p.n]")
                }
            };
            for kk in 0..4 {
                for g in 0..bc / 4 {
                    let parts: Vec<String> = (0..4).map(|jj| at(kk, 4 * g + jj)).collect();
                    let _ = writeln!(w, "        let bv{kk}_{g} = vec4<f32>({});", parts.join(", "));
                }
            }
        }
    }
    for kk in 0..4 {
        for i in 0..br {
            for g in 0..bc / 4 {
                let _ = writeln!(w, "        acc{i}_{g} = fma(vec4<f32>({}), bv{kk}_{g}, acc{i}_{g});", a_val(i, kk));
            }
        }
    }
    let _ = writeln!(w, "    }}");
    // Tail: the last K % 4 steps (none with SPLIT, whose chunks are multiples of 16, except in
    // the last split).
    let _ = writeln!(w, "    for (var kk = 4u * q_end; kk < k_end; kk++) {{");
    for i in 0..br {
        let _ = writeln!(w, "        let at{i} = a_el(min(r0 + {i}u, lr), kk);");
    }
    for g in 0..bc / 4 {
        let parts: Vec<String> = (0..4).map(|jj| format!("b_el(kk, min(c0 + {}u, lc))", 4 * g + jj)).collect();
        let _ = writeln!(w, "        let bt{g} = vec4<f32>({});", parts.join(", "));
    }
    for i in 0..br {
        for g in 0..bc / 4 {
            let _ = writeln!(w, "        acc{i}_{g} = fma(vec4<f32>(at{i}), bt{g}, acc{i}_{g});");
        }
    }
    let _ = writeln!(w, "    }}");
    let mut bias_arg = vec![String::new(); bc / 4];
    if variant.bias {
        // One load per column of the block, not one per element.
        for g in 0..bc / 4 {
            let parts: Vec<String> = (0..4).map(|jj| format!("bias[min(c0 + {}u, lc)]", 4 * g + jj)).collect();
            let _ = writeln!(w, "    let bias{g} = vec4<f32>({});", parts.join(", "));
            bias_arg[g] = format!(", bias{g}");
        }
    }
    for i in 0..br {
        for g in 0..bc / 4 {
            let _ = writeln!(w, "    put(r0 + {i}u, c0 + {}u, acc{i}_{g}, wg.z{});", 4 * g, bias_arg[g]);
        }
    }
    let _ = writeln!(w, "}}");
    if variant.f16 {
        // The declarations hold f16; every use of a load wants f32.
        let (decl, body) = s.split_at(s.find("fn a_el").expect("generated text has a_el"));
        let widen = |t: &str, arr: &str, v: bool| widen_loads(t, arr, if v { "vec4<f32>" } else { "f32" });
        return format!("{decl}{}", widen(&widen(body, "a", vec_a), "b", vec_b));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_are_widened_whole_identifiers_only() {
        let t = "let x = a[i >> 2u][i & 3u] + ba[j] + b[c[k]];";
        assert_eq!(widen_loads(t, "a", "vec4<f32>"), "let x = vec4<f32>(a[i >> 2u])[i & 3u] + ba[j] + b[c[k]];");
        assert_eq!(widen_loads(t, "b", "f32"), "let x = a[i >> 2u][i & 3u] + ba[j] + f32(b[c[k]]);");
    }

    #[test]
    fn names_round_trip() {
        let t = RegisterTile { rows: 32, cols: 16, threads: 64, threads_x: 8 };
        assert_eq!(t.name(), "r32x16w64x8");
        assert_eq!(RegisterTile::parse(&t.name()), Some(t));
        assert_eq!(RegisterTile::parse("r3x16w64x8"), None, "rows not a multiple of 4");
        assert_eq!(RegisterTile::parse("r32x16w64x128"), None, "more threads along x than in all");
        assert_eq!(RegisterTile::parse("tiled"), None);
    }

    #[test]
    fn layouts_follow_alignment() {
        let l = MatmulLayout::for_shape(128, 10, 512, false, false);
        assert!(l.vec_a && !l.vec_b);
        let l = MatmulLayout::for_shape(6, 10, 25, true, true);
        assert!(!l.vec_a && !l.vec_b);
        assert_eq!(MatmulLayout::for_shape(512, 784, 128, true, false).name(), "tn-vv");
    }
}
