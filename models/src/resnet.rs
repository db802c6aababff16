//! Residual networks of BasicBlocks, with torchvision's module names
//! (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, `fc`), so that a checkpoint
//! loads into `torchvision.models.resnet18` (with its stem replaced by a 3x3 convolution) or
//! into any CIFAR ResNet written with the same names.

use asgd_engine::layers::{BatchNorm2d, Conv2d, GlobalAvgPool, Layer, Linear, Relu, Residual};
use asgd_engine::{Device, Result};
use rand::Rng;

/// `[conv3x3 stride s, bn, relu, conv3x3, bn]` plus, where the shape changes, a projection
/// shortcut `[conv1x1 stride s, bn]` named `downsample.0` and `downsample.1`.
fn basic_block(
    dev: &Device,
    name: &str,
    cin: usize,
    cout: usize,
    stride: usize,
    rng: &mut impl Rng,
) -> Result<Residual> {
    let main: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::without_bias(dev, "conv1", cin, cout, 3, stride, 1, rng)?),
        Box::new(BatchNorm2d::new(dev, "bn1", cout)?),
        Box::new(Relu::new("relu")),
        Box::new(Conv2d::without_bias(dev, "conv2", cout, cout, 3, 1, 1, rng)?),
        Box::new(BatchNorm2d::new(dev, "bn2", cout)?),
    ];
    let shortcut: Vec<Box<dyn Layer>> = if stride != 1 || cin != cout {
        vec![
            Box::new(Conv2d::without_bias(dev, "downsample.0", cin, cout, 1, stride, 0, rng)?),
            Box::new(BatchNorm2d::new(dev, "downsample.1", cout)?),
        ]
    } else {
        Vec::new()
    };
    Residual::new(name, main, shortcut)
}

/// A 3x3 stem of `stages[0].0` channels (stride 1), then per stage `(channels, blocks)` that
/// many BasicBlocks (the first of each stage after the first with stride 2), global average
/// pooling and a linear layer to `classes`.
pub(crate) fn build(
    dev: &Device,
    in_channels: usize,
    stages: &[(usize, usize)],
    classes: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Box<dyn Layer>>> {
    let width = stages[0].0;
    let mut layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::without_bias(dev, "conv1", in_channels, width, 3, 1, 1, rng)?),
        Box::new(BatchNorm2d::new(dev, "bn1", width)?),
        Box::new(Relu::new("relu")),
    ];
    let mut cin = width;
    for (s, &(cout, blocks)) in stages.iter().enumerate() {
        for b in 0..blocks {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            layers.push(Box::new(basic_block(dev, &format!("layer{}.{b}", s + 1), cin, cout, stride, rng)?));
            cin = cout;
        }
    }
    layers.push(Box::new(GlobalAvgPool::new("avgpool")));
    layers.push(Box::new(Linear::new(dev, "fc", cin, classes, rng)?));
    Ok(layers)
}
