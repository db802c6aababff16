// C = alpha * op(A) op(B) (+ C when ACCUMULATE), register-blocked, no workgroup memory.
//
// c is (M,N). op(A) is (M,K): a is stored (M,K), or (K,M) when TRANS_A.
// op(B) is (K,N): b is stored (K,N), or (N,K) when TRANS_B. All row-major.
// Linear forward is C = X W^T (TRANS_B), its input gradient dX = dY W, and its weight
// gradient dW = dY^T X (TRANS_A).
//
// A workgroup of 256 threads is laid out as TX threads along the columns of C and
// TY = 256 / TX along its rows; each thread computes a 4x4 block whose rows are r0 + TY*i and
// columns c0 + TX*j, so that neighbouring threads touch neighbouring columns: loads of B and
// stores of C are contiguous across a SIMD group (lavapipe vectorises across invocations) and
// coalesced on GPUs. A workgroup covers a (4 TY) x (4 TX) tile of C: 64x64 with TX = 16, and
// down to 1024x4 or 4x1024 for the thin products of convolutions, which would waste most of a
// square tile. Grid: (ceil(N / (4 TX)), ceil(M / (4 TY)), S).
// Out-of-range rows and columns load from a clamped index and are not stored, which keeps
// branches out of the inner loop.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;
// Split-K: workgroup z sums only K-range [z*k_chunk, (z+1)*k_chunk) and writes its raw partial
// product to slice z of c, which is then (S, M, N); matmul_split.wgsl adds the slices. This
// gives work to many workgroups when C is small and K long (a convolution's weight gradient:
// 6x25 outputs, K = 50176).
override SPLIT: bool = false;
// Threads along the columns of C: a power of two from 1 to 256.
override TX: u32 = 16u;
const TY_TIMES_TX: u32 = 256u;

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

fn a_at(row: u32, kk: u32) -> f32 {
    if (TRANS_A) { return a[kk * p.m + row]; }
    return a[row * p.k + kk];
}

fn b_at(kk: u32, col: u32) -> f32 {
    if (TRANS_B) { return b[col * p.k + kk]; }
    return b[kk * p.n + col];
}

fn store(row: u32, c0: u32, v: vec4<f32>, slice: u32) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + TX * j;
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

// The accumulators are four vec4 values and the loop body is written out, not arrays indexed
// in loops: llvmpipe keeps arrays indexed by a loop variable in memory rather than registers,
// which made an earlier version of this kernel six times slower.
@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let ty = TY_TIMES_TX / TX;
    let r0 = wg.y * 4u * ty + t / TX;
    let c0 = wg.x * 4u * TX + t % TX;
    let last_row = p.m - 1u;
    let last_col = p.n - 1u;
    let ra = min(vec4<u32>(r0, r0 + ty, r0 + 2u * ty, r0 + 3u * ty), vec4<u32>(last_row));
    let cb = min(vec4<u32>(c0, c0 + TX, c0 + 2u * TX, c0 + 3u * TX), vec4<u32>(last_col));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var k_begin = 0u;
    var k_end = p.k;
    if (SPLIT) {
        k_begin = wg.z * p.k_chunk;
        k_end = min(p.k, k_begin + p.k_chunk);
    }
    for (var kk = k_begin; kk < k_end; kk++) {
        let av = vec4<f32>(a_at(ra.x, kk), a_at(ra.y, kk), a_at(ra.z, kk), a_at(ra.w, kk));
        let bv = vec4<f32>(b_at(kk, cb.x), b_at(kk, cb.y), b_at(kk, cb.z), b_at(kk, cb.w));
        acc0 = fma(vec4<f32>(av.x), bv, acc0);
        acc1 = fma(vec4<f32>(av.y), bv, acc1);
        acc2 = fma(vec4<f32>(av.z), bv, acc2);
        acc3 = fma(vec4<f32>(av.w), bv, acc3);
    }
    store(r0, c0, acc0, wg.z);
    store(r0 + ty, c0, acc1, wg.z);
    store(r0 + 2u * ty, c0, acc2, wg.z);
    store(r0 + 3u * ty, c0, acc3, wg.z);
}
