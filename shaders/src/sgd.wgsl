// SGD with momentum and weight decay, PyTorch's formulation (dampening 0):
//   g = grad + weight_decay * w
//   v = momentum * v + g
//   w = w - lr * v                      (plain)
//   w = w - lr * (g + momentum * v)     (Nesterov)
// Why one kernel: the whole update reads and writes each element once, so fusing it is the
// cheapest form; Nesterov is a uniform flag, not a second pipeline to compile and bind.
// With momentum 0 the velocity buffer still holds g; that costs one write and keeps one kernel.
// Grid: grid_1d(n, 256).

struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    nesterov: u32,  // 0 or 1
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;

@compute @workgroup_size(256)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let wi = w[i];
    let g = grad[i] + p.weight_decay * wi;
    let vi = p.momentum * v[i] + g;
    v[i] = vi;
    let step = select(vi, g + p.momentum * vi, p.nesterov != 0u);
    w[i] = wi - p.lr * step;
}
