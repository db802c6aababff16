// ReLU, forward and backward. Flat buffers of n elements.
// Grid: grid_1d(n, 256). The flat index is gid.x + gid.y * nwg.x * 256, so that more than
// 65535 workgroups fit (the grid is folded into two dimensions).
// Each entry point's automatic layout holds only the bindings it uses: forward binds 1 and 2,
// backward 1, 2 and 3.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // y (forward) or dx (backward)
@group(0) @binding(2) var<storage, read> in0: array<f32>;        // x (forward) or dy (backward)
@group(0) @binding(3) var<storage, read> x_saved: array<f32>;    // forward input (backward)

// y = max(x, 0)
@compute @workgroup_size(256)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    out[i] = max(in0[i], 0.0);
}

// dx = dy where x > 0, else 0 (the subgradient at 0 is taken as 0, as PyTorch does).
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    out[i] = select(0.0, in0[i], x_saved[i] > 0.0);
}
