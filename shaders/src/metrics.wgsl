// Running totals of a step's per-sample loss and correctness, kept on the GPU so that the host
// reads them back every N steps instead of every step:
//   totals[0] += sum_b loss[b];  totals[1] += sum_b correct[b];  totals[2] += B
// One workgroup; the sum runs in a fixed order (strided partial sums, then a tree).

struct Params {
    batch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> totals: array<f32>;
@group(0) @binding(2) var<storage, read> loss: array<f32>;
@group(0) @binding(3) var<storage, read> correct: array<f32>;

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_correct: array<f32, 256>;

// Grid: (1, 1, 1).
@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) t: u32) {
    var l = 0.0;
    var c = 0.0;
    for (var j = t; j < p.batch; j += 256u) {
        l += loss[j];
        c += correct[j];
    }
    part_loss[t] = l;
    part_correct[t] = c;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            part_loss[t] += part_loss[t + s];
            part_correct[t] += part_correct[t + s];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        totals[0] += part_loss[0];
        totals[1] += part_correct[0];
        totals[2] += f32(p.batch);
    }
}
