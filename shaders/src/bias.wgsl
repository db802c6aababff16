// Bias over a channel axis. x is viewed as (outer, C, inner): a linear layer's output (B, C)
// has inner = 1, a convolution's (B, C, H, W) has inner = H*W.

struct Params {
    outer: u32,
    channels: u32,
    inner: u32,
    n: u32,  // outer * channels * inner
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // y (add) or db (sum)
@group(0) @binding(2) var<storage, read> in0: array<f32>;        // bias (add) or dy (sum)

// y[o, c, i] += bias[c], and with RELU set y = max(y + bias, 0) (the ReLU after it fused).
// Grid: grid_1d(n, 256).
override RELU: bool = false;

@compute @workgroup_size(256)
fn bias_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let ch = (i / p.inner) % p.channels;
    let v = out[i] + in0[ch];
    out[i] = select(v, max(v, 0.0), RELU);
}

var<workgroup> partial: array<f32, 256>;

// db[c] = sum over o, i of dy[o, c, i]: the bias gradient. One workgroup per channel
// (grid: (min(C, 65535), ceil(C / 65535), 1)); its 256 threads stride over the outer*inner
// terms and combine them by a tree in workgroup memory, so the sum is deterministic.
@compute @workgroup_size(256)
fn channel_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
    let ch = wg.x + wg.y * nwg.x;
    // No early return before the barriers: every thread of the workgroup must reach them.
    let live = ch < p.channels;
    var acc = 0.0;
    if (live) {
        let terms = p.outer * p.inner;
        for (var j = t; j < terms; j += 256u) {
            let o = j / p.inner;
            let ii = j - o * p.inner;
            acc += in0[(o * p.channels + ch) * p.inner + ii];
        }
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }
    if (live && t == 0u) {
        out[ch] = partial[0];
    }
}
