// Max-pooling backward (see maxpool.wgsl for the shapes): each element of x receives the
// gradient of the output whose window it lies in, if it was that window's maximum, else 0.
// Windows do not overlap, so each x element has at most one window: a gather, no atomics.

struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    n: u32,  // elements of x
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> argmax: array<u32>;

// One thread per element of x. Grid: grid_1d(n, 256).
@compute @workgroup_size(256)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    let oy = iy / p.k;
    let ox = ix / p.k;
    var g = 0.0;
    if (oy < p.oh && ox < p.ow) {
        let o = (plane * p.oh + oy) * p.ow + ox;
        if (argmax[o] == i) {
            g = dy[o];
        }
    }
    dx[i] = g;
}
