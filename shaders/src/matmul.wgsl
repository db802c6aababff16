// C = alpha * op(A) op(B) (+ C when ACCUMULATE), register-blocked, no workgroup memory.
//
// c is (M,N). op(A) is (M,K): a is stored (M,K), or (K,M) when TRANS_A.
// op(B) is (K,N): b is stored (K,N), or (N,K) when TRANS_B. All row-major.
// Linear forward is C = X W^T (TRANS_B), its input gradient dX = dY W, and its weight
// gradient dW = dY^T X (TRANS_A).
//
// Each thread computes a 4x4 block of C whose rows are r0 + 16*i and columns c0 + 16*j, so
// that neighbouring threads touch neighbouring columns: loads of B and stores of C are
// contiguous across a SIMD group (lavapipe vectorises across invocations) and coalesced on
// GPUs. A workgroup covers a 64x64 tile of C. Grid: (ceil(N/64), ceil(M/64), 1).
// Out-of-range rows and columns load from a clamped index and are not stored, which keeps
// branches out of the inner loop.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
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

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r0 = wg.y * 64u + lid.y;
    let c0 = wg.x * 64u + lid.x;
    var rows: array<u32, 4>;
    var cols: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        rows[i] = min(r0 + 16u * i, p.m - 1u);
        cols[i] = min(c0 + 16u * i, p.n - 1u);
    }
    var acc: array<array<f32, 4>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            av[i] = a_at(rows[i], kk);
            bv[i] = b_at(kk, cols[i]);
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                acc[i][j] = fma(av[i], bv[j], acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let row = r0 + 16u * i;
        if (row >= p.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            let col = c0 + 16u * j;
            if (col >= p.n) { break; }
            let idx = row * p.n + col;
            var v = p.alpha * acc[i][j];
            if (ACCUMULATE) { v = v + c[idx]; }
            c[idx] = v;
        }
    }
}
