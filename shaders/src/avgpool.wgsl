// Global average pooling, NCHW: y[b, c] = mean over the H*W positions of x[b, c, :], and its
// backward dx[b, c, i] = dy[b, c] / HW. Why one thread per output plane in the forward: the
// planes this pools (a network's last feature map) hold a few dozen values, too few to repay
// a workgroup reduction, and a sequential sum is deterministic.
// x and dx are (B, C, HW); y and dy are (B, C). Grids: grid_1d(n, 256), n = B*C (forward) or
// B*C*HW (backward).

struct Params {
    planes: u32,  // B * C
    hw: u32,
    n: u32,       // threads with work: planes (forward) or planes * hw (backward)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // y (forward) or dx (backward)
@group(0) @binding(2) var<storage, read> in0: array<f32>;        // x (forward) or dy (backward)

@compute @workgroup_size(256)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let base = i * p.hw;
    var acc = 0.0;
    for (var j = 0u; j < p.hw; j++) {
        acc += in0[base + j];
    }
    out[i] = acc / f32(p.hw);
}

@compute @workgroup_size(256)
fn global_avg_pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    out[i] = in0[i / p.hw] / f32(p.hw);
}
