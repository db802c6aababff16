// C = alpha * op(A) op(B) (+ C when ACCUMULATE), tiled through workgroup memory.
// Same contract, bindings and grid as matmul.wgsl: c (M,N); a (M,K) or (K,M) with TRANS_A;
// b (K,N) or (N,K) with TRANS_B; a workgroup of 16x16 threads computes a 64x64 tile of C,
// each thread a 4x4 block with rows r0 + 16*i and columns c0 + 16*j.
//
// Why a second kernel: on GPUs, staging 64x16 slices of A and B in workgroup memory lets each
// loaded value serve 64 multiply-adds and makes the transposed layouts cost the same as the
// plain ones (the transpose happens while loading the tile). On a CPU driver the barriers cost
// more than the cache already saves; `asgd bench matmul` measures both.
//
// Double buffering: the tiles of the next K-slice are read from storage into registers before
// the current slice's multiply-adds and written into the other half of workgroup memory after
// them, so a GPU overlaps the loads' latency with arithmetic and a slice needs one barrier, not
// two. Each thread still adds its products in order of K, so results are those of the single-
// buffered kernel bit for bit. The two halves take 16 KiB, WebGPU's guaranteed minimum.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;
// Split-K: workgroup z sums only K-range [z*k_chunk, (z+1)*k_chunk) and writes its raw partial
// product to slice z of c, which is then (S, M, N); matmul_split.wgsl adds the slices. This
// gives work to many workgroups when C is small and K long (a convolution's weight gradient:
// 6x25 outputs, K = 50176).
override SPLIT: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
    k_chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

// As[h][kk][row] and Bs[h][kk][col] for one K-slice of 16 in each half h.
var<workgroup> As: array<array<array<f32, 64>, 16>, 2>;
var<workgroup> Bs: array<array<array<f32, 64>, 16>, 2>;

// The four values of A and of B that one thread loads for a K-slice.
struct Slice {
    a: vec4<f32>,
    b: vec4<f32>,
}

// 256 threads load 64x16 values of each operand, 4 apiece. With TRANS_A the fast-moving index
// runs along the rows of the tile, else along K, so that neighbouring threads read neighbouring
// addresses in both layouts.
fn load_slice(t: u32, row_base: u32, col_base: u32, k0: u32, k_end: u32) -> Slice {
    var v: Slice;
    for (var q = 0u; q < 4u; q++) {
        let e = t + 256u * q;  // 0..1024
        if (TRANS_A) {
            v.a[q] = a_at(row_base + e % 64u, k0 + e / 64u, k_end);
        } else {
            v.a[q] = a_at(row_base + e / 16u, k0 + e % 16u, k_end);
        }
        if (TRANS_B) {
            v.b[q] = b_at(k0 + e % 16u, col_base + e / 16u, k_end);
        } else {
            v.b[q] = b_at(k0 + e / 64u, col_base + e % 64u, k_end);
        }
    }
    return v;
}

fn store_slice(t: u32, h: u32, v: Slice) {
    for (var q = 0u; q < 4u; q++) {
        let e = t + 256u * q;
        if (TRANS_A) {
            As[h][e / 64u][e % 64u] = v.a[q];
        } else {
            As[h][e % 16u][e / 16u] = v.a[q];
        }
        if (TRANS_B) {
            Bs[h][e % 16u][e / 16u] = v.b[q];
        } else {
            Bs[h][e / 64u][e % 64u] = v.b[q];
        }
    }
}

// k_end bounds the K-range of this workgroup (p.k without SPLIT).
fn a_at(row: u32, kk: u32, k_end: u32) -> f32 {
    if (row >= p.m || kk >= k_end) { return 0.0; }
    if (TRANS_A) { return a[kk * p.m + row]; }
    return a[row * p.k + kk];
}

fn b_at(kk: u32, col: u32, k_end: u32) -> f32 {
    if (kk >= k_end || col >= p.n) { return 0.0; }
    if (TRANS_B) { return b[col * p.k + kk]; }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row_base = wg.y * TILE;
    let col_base = wg.x * TILE;
    let t = lid.y * 16u + lid.x;  // 0..256
    // vec4 accumulators rather than a 4x4 array: see matmul.wgsl for why.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // With SPLIT, k_chunk is a multiple of TK, so slices never straddle two workgroups' ranges.
    var first = 0u;
    var k_end = p.k;
    if (SPLIT) {
        first = wg.z * p.k_chunk / TK;
        k_end = min(p.k, (wg.z + 1u) * p.k_chunk);
    }
    let slices = (k_end + TK - 1u) / TK;
    if (first < slices) {
        store_slice(t, 0u, load_slice(t, row_base, col_base, first * TK, k_end));
    }
    workgroupBarrier();
    for (var s = first; s < slices; s++) {
        let h = (s - first) % 2u;
        let more = s + 1u < slices;
        var next: Slice;
        if (more) {
            next = load_slice(t, row_base, col_base, (s + 1u) * TK, k_end);
        }
        for (var kk = 0u; kk < TK; kk++) {
            let av = vec4<f32>(As[h][kk][lid.y], As[h][kk][lid.y + 16u], As[h][kk][lid.y + 32u], As[h][kk][lid.y + 48u]);
            let bv = vec4<f32>(Bs[h][kk][lid.x], Bs[h][kk][lid.x + 16u], Bs[h][kk][lid.x + 32u], Bs[h][kk][lid.x + 48u]);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        // The other half was last read in the previous slice, before the barrier that ended it.
        if (more) {
            store_slice(t, 1u - h, next);
        }
        workgroupBarrier();
    }
    let r0 = row_base + lid.y;
    let c0 = col_base + lid.x;
    store(r0, c0, acc0, wg.z);
    store(r0 + 16u, c0, acc1, wg.z);
    store(r0 + 32u, c0, acc2, wg.z);
    store(r0 + 48u, c0, acc3, wg.z);
}

fn store(row: u32, c0: u32, v: vec4<f32>, slice: u32) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + 16u * j;
        if (col >= p.n) { return; }
        let idx = row * p.n + col;
        if (SPLIT) {
            c[slice * p.m * p.n + idx] = v[j];
            continue;
        }
        var out = p.alpha * v[j];
        if (ACCUMULATE) { out = out + c[idx]; }
        c[idx] = out;
    }
}
