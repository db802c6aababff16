// y = alpha * x + beta * y over flat buffers of n elements (beta = 0 writes a scaled copy).
// Used to average gradients and models, and with RELU set, y = max(x + y, 0) for a residual
// block's sum and ReLU in one pass. Grid: grid_1d(n, 256), flat index folded as in relu.wgsl.

override RELU: bool = false;

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256)
fn scale_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    var acc = p.alpha * x[i];
    // beta == 0 must not read y: it may hold NaN from a recycled buffer.
    if (p.beta != 0.0) {
        acc = acc + p.beta * y[i];
    }
    if (RELU) {
        acc = max(acc, 0.0);
    }
    y[i] = acc;
}
