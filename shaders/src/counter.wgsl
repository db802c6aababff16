// count[0] += amount: advances a step counter kept on the GPU (Adam's t). Why a dispatch of its
// own: the kernel that reads the count runs on many workgroups, so none of them may change it;
// and a queued buffer write lands before the whole submission, not between two dispatches.
// count is (1). Grid: (1, 1, 1).

struct Params {
    amount: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> count: array<f32>;

@compute @workgroup_size(1)
fn count_add() {
    count[0] = count[0] + p.amount;
}
