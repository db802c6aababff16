//! The WGSL kernels of asgd, one file per op family. Each is exposed as a [`Shader`] and
//! validated by naga in this crate's tests, so a broken shader fails with its file and line.

/// A WGSL source file.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    /// File name, used in labels and error messages.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

macro_rules! shaders {
    ($($(#[$doc:meta])* $id:ident => $file:literal),* $(,)?) => {
        $( $(#[$doc])* pub const $id: Shader = Shader { name: $file, source: include_str!($file) }; )*
        /// Every shader, for validation.
        pub const ALL: &[Shader] = &[$($id),*];
    };
}

shaders! {
    /// `y = alpha * x + beta * y`.
    ELEMENTWISE => "elementwise.wgsl",
    /// ReLU forward and backward.
    RELU => "relu.wgsl",
    /// Matrix product with optional transposes, register-blocked (no workgroup memory).
    MATMUL => "matmul.wgsl",
    /// The same matrix product tiled through workgroup memory.
    MATMUL_TILED => "matmul_tiled.wgsl",
    /// Matrix products with tiny outputs and long K, threads sharing K.
    MATMUL_KDOT => "matmul_kdot.wgsl",
    /// Summing the partial products of a split-K matrix product.
    MATMUL_SPLIT => "matmul_split.wgsl",
    /// Bias add over a channel axis and its gradient (a per-channel sum).
    BIAS => "bias.wgsl",
    /// The layout kernels of 2-D convolution: im2col and col2im.
    CONV2D => "conv2d.wgsl",
    /// Swapping the two outer axes of a 3-D tensor.
    PERMUTE => "permute.wgsl",
    /// Max-pooling forward (values and arg-max).
    MAXPOOL => "maxpool.wgsl",
    /// Max-pooling backward.
    MAXPOOL_BACKWARD => "maxpool_backward.wgsl",
    /// Fused softmax + cross-entropy: loss, gradient, correctness.
    SOFTMAX_XENT => "softmax_xent.wgsl",
    /// Running loss/accuracy totals on the GPU.
    METRICS => "metrics.wgsl",
    /// SGD with momentum, weight decay and optional Nesterov momentum.
    SGD => "sgd.wgsl",
    /// Adam and AdamW, with the bias corrections computed from a step count on the GPU.
    ADAM => "adam.wgsl",
    /// Adding to a one-element counter (an optimiser's step count).
    COUNTER => "counter.wgsl",
    /// Global average pooling forward and backward.
    AVGPOOL => "avgpool.wgsl",
    /// Batch norm's element-wise kernels: the normalisation and the input gradient.
    BATCHNORM => "batchnorm.wgsl",
    /// Batch norm's training-mode per-channel statistics and running averages.
    BATCHNORM_STATS => "batchnorm_stats.wgsl",
    /// Batch norm's per-channel parameter gradients.
    BATCHNORM_BACKWARD => "batchnorm_backward.wgsl",
}

pub mod register_matmul;
pub use register_matmul::{
    register_matmul_bias_source, register_matmul_f16_source, register_matmul_source, MatmulLayout, RegisterTile,
};
pub mod subgroup_matmul;
pub use subgroup_matmul::{subgroup_matmul_bias_source, subgroup_matmul_source, SubgroupTile};

pub mod conv_direct;
pub use conv_direct::{conv_direct_source, conv_weight_grad_source, ConvPass, DirectConv, DirectWeightGrad};
