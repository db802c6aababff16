// dst[j, i, r] = src[i, j, r]: swaps the two outer axes of src viewed as (D0, D1, R).
// Turns a convolution's (Cout, B, P) product into NCHW (B, Cout, P) and back.
// One thread per element of dst; neighbouring threads write neighbouring elements and read
// runs of R neighbours. Grid: grid_1d(n, 256).

struct Params {
    d0: u32,
    d1: u32,
    inner: u32,
    n: u32,  // d0 * d1 * inner
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;

@compute @workgroup_size(256)
fn swap_outer(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 256u;
    if (k >= p.n) { return; }
    let r = k % p.inner;
    let i = (k / p.inner) % p.d0;
    let j = k / (p.inner * p.d0);
    dst[k] = src[(i * p.d1 + j) * p.inner + r];
}
