// Partial products of C = op(A) op(B) for outputs too small to fill a tile: each workgroup
// owns a 4x4 block of C (rows wg.y*4.., columns wg.x*4..) and one K-range
// [z*k_chunk, (z+1)*k_chunk); its 256 threads stride over that range with four vec4
// accumulators and then add their blocks by a tree in workgroup memory (fixed order, so the
// result is deterministic). The block goes to slice z of part, (S, M, N); matmul_split.wgsl
// then adds the slices and applies alpha and accumulation.
//
// Why: a convolution's weight gradient is a 6x25 result with K = 50176. Any 256-thread
// register tile covers at least 4096 outputs, 27 times too many; here the threads share K
// instead. Layouts and operands as in matmul.wgsl. Grid: (ceil(N/4), ceil(M/4), S).

override TRANS_A: bool = false;
override TRANS_B: bool = false;

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
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
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

// 256 threads x 4 vec4 accumulators.
var<workgroup> red: array<vec4<f32>, 1024>;

@compute @workgroup_size(256)
fn matmul_kdot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let r0 = wg.y * 4u;
    let c0 = wg.x * 4u;
    let ra = min(vec4<u32>(r0, r0 + 1u, r0 + 2u, r0 + 3u), vec4<u32>(p.m - 1u));
    let cb = min(vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u), vec4<u32>(p.n - 1u));
    let k_begin = wg.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = k_begin + t; kk < k_end; kk += 256u) {
        let av = vec4<f32>(a_at(ra.x, kk), a_at(ra.y, kk), a_at(ra.z, kk), a_at(ra.w, kk));
        let bv = vec4<f32>(b_at(kk, cb.x), b_at(kk, cb.y), b_at(kk, cb.z), b_at(kk, cb.w));
        acc0 = fma(vec4<f32>(av.x), bv, acc0);
        acc1 = fma(vec4<f32>(av.y), bv, acc1);
        acc2 = fma(vec4<f32>(av.z), bv, acc2);
        acc3 = fma(vec4<f32>(av.w), bv, acc3);
    }
    red[4u * t] = acc0;
    red[4u * t + 1u] = acc1;
    red[4u * t + 2u] = acc2;
    red[4u * t + 3u] = acc3;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            for (var i = 0u; i < 4u; i++) {
                red[4u * t + i] += red[4u * (t + s) + i];
            }
        }
        workgroupBarrier();
    }
    if (t < 16u) {
        let i = t / 4u;
        let j = t % 4u;
        let row = r0 + i;
        let col = c0 + j;
        if (row < p.m && col < p.n) {
            part[(wg.z * p.m + row) * p.n + col] = red[i][j];
        }
    }
}
