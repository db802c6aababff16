//! Every WGSL kernel against its f64 CPU reference, on random inputs of awkward sizes (not
//! multiples of any tile or workgroup). One test binary; a module per op family.
//!
//! These tests need a GPU adapter; on a machine without a GPU, lavapipe
//! (`apt-get install libvulkan1 mesa-vulkan-drivers`) is one.

mod support;

mod adam;
mod avgpool;
mod batchnorm;
mod bias;
mod conv2d;
mod elementwise;
mod matmul;
mod maxpool;
mod permute;
mod relu;
mod sgd;
mod softmax_xent;
mod tune;
