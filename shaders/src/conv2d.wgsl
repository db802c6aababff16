// 2-D convolution (cross-correlation, as PyTorch's Conv2d), NCHW, square stride and padding.
//
// x is (B, Cin, H, W); w is (Cout, Cin, KH, KW); y is (B, Cout, OH, OW) with
// OH = (H + 2*pad - KH) / stride + 1 and OW likewise. The bias is added by bias.wgsl.
//
//   y[b,o,oy,ox] = sum_{c,ky,kx} x[b, c, oy*stride - pad + ky, ox*stride - pad + kx] * w[o,c,ky,kx]
//
// Each entry binds out (1) and two inputs (2, 3); which tensors they are is written above each.

struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    n: u32,  // number of threads doing work: elements of y, of dx, or of dw
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> in0: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<f32>;

// out = y, in0 = x, in1 = w. One thread per element of y. Grid: grid_1d(n, 256).
@compute @workgroup_size(256)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let o = (i / (p.ow * p.oh)) % p.cout;
    let bb = i / (p.ow * p.oh * p.cout);
    // Signed origin of the window: padding makes it negative at the top-left border.
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    var acc = 0.0;
    for (var c = 0u; c < p.cin; c++) {
        let xbase = (bb * p.cin + c) * p.h;
        let wbase = (o * p.cin + c) * p.kh;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            let xrow = (xbase + u32(iy)) * p.w;
            let wrow = (wbase + ky) * p.kw;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + i32(kx);
                if (ix < 0 || ix >= i32(p.w)) { continue; }
                acc = fma(in0[xrow + u32(ix)], in1[wrow + kx], acc);
            }
        }
    }
    out[i] = acc;
}

// out = dx, in0 = dy, in1 = w. One thread per element of x:
//   dx[b,c,iy,ix] = sum over (o, ky, kx) with iy = oy*stride - pad + ky (same for x) of
//                   dy[b,o,oy,ox] * w[o,c,ky,kx]
// Each input element gathers from the outputs whose window covers it, so no two threads write
// one element and no atomics are needed. Grid: grid_1d(n, 256).
@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let c = (i / (p.w * p.h)) % p.cin;
    let bb = i / (p.w * p.h * p.cin);
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        // oy * stride = iy + pad - ky must be a non-negative multiple of stride below oh.
        let ty = i32(iy + p.pad) - i32(ky);
        if (ty < 0 || u32(ty) % p.stride != 0u) { continue; }
        let oy = u32(ty) / p.stride;
        if (oy >= p.oh) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(ix + p.pad) - i32(kx);
            if (tx < 0 || u32(tx) % p.stride != 0u) { continue; }
            let ox = u32(tx) / p.stride;
            if (ox >= p.ow) { continue; }
            for (var o = 0u; o < p.cout; o++) {
                let dyv = in0[((bb * p.cout + o) * p.oh + oy) * p.ow + ox];
                let wv = in1[((o * p.cin + c) * p.kh + ky) * p.kw + kx];
                acc = fma(dyv, wv, acc);
            }
        }
    }
    out[i] = acc;
}

var<workgroup> partial: array<f32, 256>;

// out = dw, in0 = dy, in1 = x. One workgroup per weight element (o, c, ky, kx); its 256
// threads stride over the B*OH*OW terms
//   dw[o,c,ky,kx] = sum_{b,oy,ox} dy[b,o,oy,ox] * x[b, c, oy*stride - pad + ky, ox*stride - pad + kx]
// and combine them by a tree in workgroup memory (deterministic order).
// Grid: (min(n, 65535), ceil(n / 65535), 1) with n = Cout*Cin*KH*KW.
@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) t: u32) {
    let widx = wg.x + wg.y * nwg.x;
    let live = widx < p.n;
    var acc = 0.0;
    if (live) {
        let kx = widx % p.kw;
        let ky = (widx / p.kw) % p.kh;
        let c = (widx / (p.kw * p.kh)) % p.cin;
        let o = widx / (p.kw * p.kh * p.cin);
        let per_image = p.oh * p.ow;
        let terms = p.batch * per_image;
        for (var j = t; j < terms; j += 256u) {
            let bb = j / per_image;
            let r = j - bb * per_image;
            let oy = r / p.ow;
            let ox = r - oy * p.ow;
            let iy = i32(oy * p.stride + ky) - i32(p.pad);
            let ix = i32(ox * p.stride + kx) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w)) { continue; }
            let dyv = in0[((bb * p.cout + o) * p.oh + oy) * p.ow + ox];
            let xv = in1[((bb * p.cin + c) * p.h + u32(iy)) * p.w + u32(ix)];
            acc = fma(dyv, xv, acc);
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
        out[widx] = partial[0];
    }
}
