// The layout kernels of 2-D convolution (cross-correlation, as PyTorch's Conv2d), NCHW,
// square stride and padding. The arithmetic is done by matmul.wgsl:
//
//   forward:  cols = im2col(x)            (CKK, B*P)
//             y'   = W cols               (Cout, B*P)      W is (Cout, CKK)
//             y    = swap_outer(y')       (B, Cout, P)
//   backward: dy'  = swap_outer(dy)       (Cout, B*P)
//             dW   = dy' cols^T           (Cout, CKK)
//             dcols = W^T dy'             (CKK, B*P)
//             dx   = col2im(dcols)        (B, Cin, H, W)
//
// with P = OH*OW, CKK = Cin*KH*KW, OH = (H + 2*pad - KH) / stride + 1 (OW likewise).
// Casting the convolution as matrix products reuses the one tuned kernel; the direct loops
// this replaced ran 10-20x slower on lavapipe.

struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    n: u32,  // elements written: of cols (im2col) or of dx (col2im)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // cols (im2col) or dx (col2im)
@group(0) @binding(2) var<storage, read> in0: array<f32>;        // x (im2col) or dcols (col2im)

// cols[(c*KH + ky)*KW + kx, b*P + oy*OW + ox] = x[b, c, oy*stride - pad + ky, ox*stride - pad + kx],
// zero where the tap falls in the padding. One thread per element of cols; neighbouring threads
// take neighbouring output columns, so their reads of x are neighbours too. Grid: grid_1d(n, 256).
@compute @workgroup_size(256)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let per_image = p.oh * p.ow;
    let cols_n = p.batch * per_image;
    let row = i / cols_n;
    let col = i - row * cols_n;
    let bb = col / per_image;
    let r = col - bb * per_image;
    let oy = r / p.ow;
    let ox = r - oy * p.ow;
    let kx = row % p.kw;
    let ky = (row / p.kw) % p.kh;
    let c = row / (p.kw * p.kh);
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    var v = 0.0;
    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
        v = in0[((bb * p.cin + c) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    out[i] = v;
}

// dx[b, c, iy, ix] = sum of dcols over the taps (ky, kx) whose window covers (iy, ix):
// oy*stride = iy + pad - ky (and likewise for x) with 0 <= oy < OH. Each input element gathers
// its taps, so no two threads write one element and no atomics are needed.
// Grid: grid_1d(n, 256) with n = B*Cin*H*W.
@compute @workgroup_size(256)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let c = (i / (p.w * p.h)) % p.cin;
    let bb = i / (p.w * p.h * p.cin);
    let per_image = p.oh * p.ow;
    let cols_n = p.batch * per_image;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let ty = i32(iy + p.pad) - i32(ky);
        if (ty < 0 || u32(ty) % p.stride != 0u) { continue; }
        let oy = u32(ty) / p.stride;
        if (oy >= p.oh) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(ix + p.pad) - i32(kx);
            if (tx < 0 || u32(tx) % p.stride != 0u) { continue; }
            let ox = u32(tx) / p.stride;
            if (ox >= p.ow) { continue; }
            let row = (c * p.kh + ky) * p.kw + kx;
            acc += in0[row * cols_n + bb * per_image + oy * p.ow + ox];
        }
    }
    out[i] = acc;
}
