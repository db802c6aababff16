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
    n: u32,  // threads: rows of cols (im2col) or of dx (col2im)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // cols (im2col) or dx (col2im)
@group(0) @binding(2) var<storage, read> in0: array<f32>;        // x (im2col) or dcols (col2im)

// cols[(c*KH + ky)*KW + kx, b*P + oy*OW + ox] = x[b, c, oy*stride - pad + ky, ox*stride - pad + kx],
// zero where the tap falls in the padding. One thread per output row (row of cols, image, oy),
// which writes the OW columns of that row: the divisions that split an index into its parts
// (each a loop of scalar divisions on a CPU driver, which has no vector integer divide) are
// paid once per row rather than once per element. n = CKK * B * OH threads; grid_1d(n, 64).
@compute @workgroup_size(64)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) { return; }
    let oy = i % p.oh;
    let rest = i / p.oh;
    let bb = rest % p.batch;
    let row = rest / p.batch;
    let kx = row % p.kw;
    let ky = (row / p.kw) % p.kh;
    let c = row / (p.kw * p.kh);
    let per_image = p.oh * p.ow;
    let out_base = row * p.batch * per_image + bb * per_image + oy * p.ow;
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    if (iy < 0 || iy >= i32(p.h)) {
        for (var ox = 0u; ox < p.ow; ox++) {
            out[out_base + ox] = 0.0;
        }
        return;
    }
    let in_base = ((bb * p.cin + c) * p.h + u32(iy)) * p.w;
    var ix = i32(kx) - i32(p.pad);
    for (var ox = 0u; ox < p.ow; ox++) {
        var v = 0.0;
        if (ix >= 0 && ix < i32(p.w)) {
            v = in0[in_base + u32(ix)];
        }
        out[out_base + ox] = v;
        ix += i32(p.stride);
    }
}

// dx[b, c, iy, ix] = sum of dcols over the taps (ky, kx) whose window covers (iy, ix):
// oy*stride = iy + pad - ky (and likewise for x) with 0 <= oy < OH. Each input element gathers
// its taps, so no two threads write one element and no atomics are needed. One thread per input
// row (b, c, iy) writes its W elements (divisions once per row, as in im2col; none per tap at
// stride 1). n = B * Cin * H threads; grid_1d(n, 64).
@compute @workgroup_size(64)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) { return; }
    let iy = i % p.h;
    let c = (i / p.h) % p.cin;
    let bb = i / (p.h * p.cin);
    let per_image = p.oh * p.ow;
    let cols_n = p.batch * per_image;
    let out_base = i * p.w;
    for (var ix = 0u; ix < p.w; ix++) {
        var acc = 0.0;
        for (var ky = 0u; ky < p.kh; ky++) {
            let ty = i32(iy + p.pad) - i32(ky);
            if (ty < 0) { continue; }
            var oy = u32(ty);
            if (p.stride != 1u) {
                if (oy % p.stride != 0u) { continue; }
                oy = oy / p.stride;
            }
            if (oy >= p.oh) { continue; }
            let row_base = (c * p.kh + ky) * p.kw * cols_n + bb * per_image + oy * p.ow;
            for (var kx = 0u; kx < p.kw; kx++) {
                let tx = i32(ix + p.pad) - i32(kx);
                if (tx < 0) { continue; }
                var ox = u32(tx);
                if (p.stride != 1u) {
                    if (ox % p.stride != 0u) { continue; }
                    ox = ox / p.stride;
                }
                if (ox >= p.ow) { continue; }
                acc += in0[row_base + kx * cols_n + ox];
            }
        }
        out[out_base + ix] = acc;
    }
}
