// Batch norm, training mode: per-channel batch statistics and the running averages.
// Why a workgroup per channel, and one pass over x: every output of a channel needs its mean and
// variance over all B*HW values first; one workgroup (256 threads, a tree in workgroup memory)
// reduces a channel deterministically. Each thread sums d = x - s and d^2 over its values,
// shifted by the first value s it reads, and turns them into its count, mean and sum of squared
// deviations M2 = sum d^2 - (sum d)^2 / n; the tree then merges those triples with Chan et al.'s
// formula (M2 = M2a + M2b + delta^2 na nb / n). The shift keeps the digits that E[x^2] - E[x]^2
// in f32 would cancel in a channel whose mean is large against its spread (the cancellation is
// bounded by how far s lies from the thread's mean, in units of the spread, and s is one of its
// values), and merging deviations rather than raw sums keeps it bounded across threads. Reading
// x once rather than twice (first the mean, then sum (x - mean)^2) halves the kernel's loads,
// which are its cost on a CPU driver.
//   mean[c] = sum x / N;  var = M2 / N (biased);  invstd[c] = 1 / sqrt(var + eps)
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var + momentum var N / (N - 1)   (unbiased)
//   num_batches[0] += 1
// x is (B, C, HW); mean, invstd, running_mean, running_var are (C); num_batches is (1); N = B*HW.
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
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> invstd: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> num_batches: array<f32>;
@group(0) @binding(6) var<storage, read> x: array<f32>;

var<workgroup> partial: array<vec3<f32>, 256>;

// Thread t visits the values j = t, t + 256, ... of its channel (j = b * HW + i), in that order.
// Their indices in x, (b * C + ch) * HW + i, are stepped without a division per value (a CPU
// driver has no vector divide): 256 values on is `jump` further, or `jump + wrap` when i passes
// the end of a row. A Walk is a thread's current index in x and its i.
struct Walk {
    idx: u32,
    i: u32,
}

fn walk_start(ch: u32, t: u32) -> Walk {
    let b = t / p.hw;
    let i = t - b * p.hw;
    return Walk((b * p.channels + ch) * p.hw + i, i);
}

fn walk_next(w: Walk) -> Walk {
    let sb = 256u / p.hw;
    let si = 256u - sb * p.hw;
    let row = p.channels * p.hw;
    var next = Walk(w.idx + sb * row + si, w.i + si);
    if (next.i >= p.hw) {
        next.i -= p.hw;
        next.idx += row - p.hw;
    }
    return next;
}

// Merges two (count, mean, M2) summaries of disjoint sets of values (Chan et al.).
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if (b.x == 0.0) { return a; }
    if (a.x == 0.0) { return b; }
    let n = a.x + b.x;
    let delta = b.y - a.y;
    let wb = b.x / n;
    return vec3<f32>(n, a.y + delta * wb, a.z + b.z + delta * delta * a.x * wb);
}

// The merge of every thread's summary, returned to all threads. Call from uniform control flow
// only (it holds barriers); partial may be reused as soon as it returns.
fn workgroup_merge(t: u32, v: vec3<f32>) -> vec3<f32> {
    partial[t] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[t] = merge(partial[t], partial[t + s]);
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn batchnorm_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let ch = wg.x + wg.y * nwg.x;
    // No early return before the barriers: every thread of the workgroup must reach them.
    let live = ch < p.channels;
    let count = p.batch * p.hw;
    let nf = f32(count);
    var own = vec3<f32>(0.0);
    if (live && t < count) {
        var w = walk_start(ch, t);
        let shift = x[w.idx];
        var sums = vec2<f32>(0.0);
        var n = 0.0;
        for (var j = t; j < count; j += 256u) {
            let d = x[w.idx] - shift;
            sums += vec2<f32>(d, d * d);
            n += 1.0;
            w = walk_next(w);
        }
        // sum d^2 - (sum d)^2 / n >= 0 in exact arithmetic; rounding can take it a hair below.
        own = vec3<f32>(n, shift + sums.x / n, max(sums.y - sums.x * sums.x / n, 0.0));
    }
    let total = workgroup_merge(t, own);
    let mu = total.y;
    let var_biased = total.z / nf;
    if (live && t == 0u) {
        mean[ch] = mu;
        invstd[ch] = 1.0 / sqrt(var_biased + p.eps);
        running_mean[ch] = (1.0 - p.momentum) * running_mean[ch] + p.momentum * mu;
        running_var[ch] = (1.0 - p.momentum) * running_var[ch] + p.momentum * var_biased * (nf / (nf - 1.0));
    }
    if (ch == 0u && t == 0u) {
        num_batches[0] = num_batches[0] + 1.0;
    }
}
