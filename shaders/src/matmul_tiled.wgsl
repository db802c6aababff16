// C = alpha * op(A) op(B) (+ C when ACCUMULATE), tiled through workgroup memory.
// Same contract, bindings and grid as matmul.wgsl: c (M,N); a (M,K) or (K,M) with TRANS_A;
// b (K,N) or (N,K) with TRANS_B; a workgroup of 16x16 threads computes a 64x64 tile of C,
// each thread a 4x4 block with rows r0 + 16*i and columns c0 + 16*j.
//
// Why a second kernel: on GPUs, staging 64x16 slices of A and B in workgroup memory lets each
// loaded value serve 64 multiply-adds and makes the transposed layouts cost the same as the
// plain ones (the transpose happens while loading the tile). On a CPU driver the barriers cost
// more than the cache already saves; `asgd bench matmul` measures both.

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

const TILE: u32 = 64u;
const TK: u32 = 16u;

// As[kk][row] and Bs[kk][col] for one K-slice of 16.
var<workgroup> As: array<array<f32, 64>, 16>;
var<workgroup> Bs: array<array<f32, 64>, 16>;

fn a_at(row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) { return 0.0; }
    if (TRANS_A) { return a[kk * p.m + row]; }
    return a[row * p.k + kk];
}

fn b_at(kk: u32, col: u32) -> f32 {
    if (kk >= p.k || col >= p.n) { return 0.0; }
    if (TRANS_B) { return b[col * p.k + kk]; }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row_base = wg.y * TILE;
    let col_base = wg.x * TILE;
    let t = lid.y * 16u + lid.x;  // 0..256
    var acc: array<array<f32, 4>, 4>;
    let slices = (p.k + TK - 1u) / TK;
    for (var s = 0u; s < slices; s++) {
        let k0 = s * TK;
        // 256 threads load 64x16 values of each operand, 4 apiece. With TRANS_A the
        // fast-moving index runs along the rows of the tile, else along K, so that
        // neighbouring threads read neighbouring addresses in both layouts.
        for (var q = 0u; q < 4u; q++) {
            let e = t + 256u * q;  // 0..1024
            if (TRANS_A) {
                As[e / 64u][e % 64u] = a_at(row_base + e % 64u, k0 + e / 64u);
            } else {
                As[e % 16u][e / 16u] = a_at(row_base + e / 16u, k0 + e % 16u);
            }
            if (TRANS_B) {
                Bs[e % 16u][e / 16u] = b_at(k0 + e % 16u, col_base + e / 16u);
            } else {
                Bs[e / 64u][e % 64u] = b_at(k0 + e / 64u, col_base + e % 64u);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = As[kk][lid.y + 16u * i];
                bv[i] = Bs[kk][lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row_base + lid.y + 16u * i;
        if (row >= p.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            let col = col_base + lid.x + 16u * j;
            if (col >= p.n) { break; }
            let idx = row * p.n + col;
            var v = p.alpha * acc[i][j];
            if (ACCUMULATE) { v = v + c[idx]; }
            c[idx] = v;
        }
    }
}
