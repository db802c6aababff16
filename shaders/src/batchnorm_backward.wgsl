// Batch norm backward, the per-channel part: with xhat = (x - mean) invstd,
//   dgamma[c] = sum dy xhat;  dbeta[c] = sum dy   (over the N = B*HW values of channel c)
// Why its own kernel before the input gradient: every dx of a channel needs both sums. One
// workgroup per channel reduces them together by a tree in workgroup memory (deterministic).
// With RELU set, dy is the gradient after a fused ReLU and counts only where the saved output
// (binding 7) is positive; without it, binding 7 is bound but not read.
// dy, x and the saved output are (B, C, HW); dgamma, dbeta, mean and invstd are (C).
// Grid: one workgroup per channel, (min(C, 65535), ceil(C / 65535), 1).

struct Params {
    batch: u32,
    channels: u32,
    hw: u32,
    n: u32,  // B * C * HW
    momentum: f32,
    eps: f32,
    from_running: u32,  // unused here; the struct is shared by the batch-norm kernels
    seg: u32,   // elements per thread of the element-wise kernels (one row of HW)
    segs: u32,  // segments per row: ceil(HW / seg)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(6) var<storage, read> invstd: array<f32>;
@group(0) @binding(7) var<storage, read> relu_out: array<f32>;

override RELU: bool = false;

// (sum dy (x - mean), sum dy) partial sums.
var<workgroup> partial: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn batchnorm_backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) t: u32) {
    let ch = wg.x + wg.y * nwg.x;
    // No early return before the barriers: every thread of the workgroup must reach them.
    let live = ch < p.channels;
    var acc = vec2<f32>(0.0, 0.0);
    if (live) {
        let mu = mean[ch];
        let count = p.batch * p.hw;
        // j = b * HW + i visited as t, t + 256, ...; the index stepped without a division per
        // value, as in batchnorm_stats.wgsl.
        let sb = 256u / p.hw;
        let si = 256u - sb * p.hw;
        let row = p.channels * p.hw;
        let b0 = t / p.hw;
        var i = t - b0 * p.hw;
        var idx = (b0 * p.channels + ch) * p.hw + i;
        for (var j = t; j < count; j += 256u) {
            var g = dy[idx];
            if (RELU) {
                g = select(0.0, g, relu_out[idx] > 0.0);
            }
            acc += vec2<f32>(g * (x[idx] - mu), g);
            idx += sb * row + si;
            i += si;
            if (i >= p.hw) {
                i -= p.hw;
                idx += row - p.hw;
            }
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
        dgamma[ch] = partial[0].x * invstd[ch];
        dbeta[ch] = partial[0].y;
    }
}
