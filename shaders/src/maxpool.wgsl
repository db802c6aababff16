// Max-pooling with a square window equal to its stride (non-overlapping), NCHW, no padding;
// rows and columns beyond the last full window are dropped (floor), as in PyTorch.
// x is (B, C, H, W), y and argmax are (B, C, OH, OW) with OH = H / k, OW = W / k.

struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    n: u32,  // elements of y (forward) or of x (backward)
}

@group(0) @binding(0) var<uniform> p: Params;

// Forward bindings: y, argmax (flat index into x of each maximum), x.
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;

// One thread per element of y. The first maximum in row-major window order wins, as in
// PyTorch. Grid: grid_1d(n, 256).
@compute @workgroup_size(256)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = i / (p.ow * p.oh);  // b * C + c
    let base = plane * p.h * p.w;
    var best_idx = base + (oy * p.k) * p.w + ox * p.k;
    var best = x[best_idx];
    for (var dy = 0u; dy < p.k; dy++) {
        for (var dx = 0u; dx < p.k; dx++) {
            let idx = base + (oy * p.k + dy) * p.w + ox * p.k + dx;
            let v = x[idx];
            if (v > best) {
                best = v;
                best_idx = idx;
            }
        }
    }
    y[i] = best;
    argmax[i] = best_idx;
}
