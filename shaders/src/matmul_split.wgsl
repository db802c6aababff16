// The second half of a split-K matrix product (see matmul.wgsl): c = alpha * sum_z part[z]
// (+ c when accumulating), the slices added in order z = 0, 1, ... so the result is
// deterministic. part is (S, M, N), c is (M, N). Grid: grid_1d(mn, 256).

struct Params {
    mn: u32,
    splits: u32,
    alpha: f32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;

@compute @workgroup_size(256)
fn split_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.mn) { return; }
    var acc = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        acc += part[z * p.mn + i];
    }
    var out = p.alpha * acc;
    if (p.accumulate != 0u) {
        out = out + c[i];
    }
    c[i] = out;
}
