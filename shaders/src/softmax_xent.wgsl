// Fused softmax + cross-entropy over logits (B, C) with integer labels (B).
//
//   loss[b]      = log(sum_j exp(z[b,j])) - z[b, label[b]]
//   dz[b,j]      = scale * (softmax(z[b])_j - [j == label[b]])
//   correct[b]   = 1 if the first arg-max of z[b] is label[b], else 0
//
// With scale = 1/B, dz is the gradient of the mean loss over the batch (PyTorch's default
// reduction). The maximum is subtracted before exp so that large logits do not overflow.

struct Params {
    batch: u32,
    classes: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dz: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> correct: array<f32>;
@group(0) @binding(4) var<storage, read> z: array<f32>;
@group(0) @binding(5) var<storage, read> labels: array<u32>;

// One thread per row: classification heads are narrow (10 classes here), and a row per thread
// keeps every sum in one fixed order. Grid: grid_1d(B, 64).
@compute @workgroup_size(64)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 64u;
    if (row >= p.batch) { return; }
    let base = row * p.classes;
    let label = labels[row];
    var m = z[base];
    var arg = 0u;
    for (var j = 1u; j < p.classes; j++) {
        let v = z[base + j];
        if (v > m) {
            m = v;
            arg = j;
        }
    }
    var s = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        s += exp(z[base + j] - m);
    }
    let log_s = log(s);
    for (var j = 0u; j < p.classes; j++) {
        let prob = exp(z[base + j] - m - log_s);
        dz[base + j] = p.scale * (prob - select(0.0, 1.0, j == label));
    }
    loss[row] = log_s + m - z[base + min(label, p.classes - 1u)];
    correct[row] = select(0.0, 1.0, arg == label);
}
