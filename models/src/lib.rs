//! The models asgd trains, each a list of engine layers built from a small config. Layer and
//! parameter names follow the PyTorch module each mirrors, so checkpoints load into PyTorch.

mod resnet;

use asgd_engine::layers::{Conv2d, Flatten, Layer, Linear, MaxPool2d, Relu};
use asgd_engine::{Device, EngineError, Model, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The most parameters a model may have (2^30, 4 GiB of f32 before gradients and optimiser
/// state): a bound far above every model here (ResNet-18 has 11M) that keeps a mistyped size
/// from reaching an allocation that aborts the process.
pub const MAX_PARAMS: u64 = 1 << 30;

/// The most classes a model may output: labels are u32 and counted in f32, exact to 2^24.
pub const MAX_CLASSES: usize = 1 << 24;

/// The deepest CIFAR ResNet asgd builds (He et al.'s deepest, 1202 layers).
pub const MAX_RESNET_DEPTH: usize = 1202;

/// The architectures asgd can build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelConfig {
    /// Flatten, then `Linear -> ReLU` for each hidden size, then a `Linear` to the classes.
    /// Layers are named `fc1`, `fc2`, ...
    Mlp { hidden: Vec<usize> },
    /// LeNet-5 for 28x28 images: conv 5x5 6 ch pad 2, ReLU, max-pool 2, conv 5x5 16 ch, ReLU,
    /// max-pool 2, then 400-120-84-classes with ReLU (`conv1`, `conv2`, `fc1`..`fc3`).
    Lenet,
    /// He et al. (2016)'s CIFAR ResNet of `depth = 6n + 2` layers: a 3x3 stem of 16
    /// channels, three stages of n BasicBlocks with 16, 32 and 64 channels (the first block
    /// of stages 2 and 3 strided, with a 1x1 projection shortcut), global average pooling and
    /// a linear classifier. Depth 20 has about 0.27M parameters.
    Resnet { depth: usize },
    /// torchvision's `resnet18` (BasicBlocks [2, 2, 2, 2] of 64..512 channels, same
    /// state_dict names) with the usual CIFAR stem: a 3x3 convolution of stride 1 and no
    /// max-pool.
    Resnet18,
}

impl ModelConfig {
    /// The default MLP, 784-512-512-10 on MNIST.
    pub fn mlp() -> Self {
        Self::Mlp { hidden: vec![512, 512] }
    }

    /// Parses `mlp`, `lenet` (also `lenet5`), `resnet` (depth 20), `resnetD` / `resnet-D`
    /// (e.g. `resnet8`, `resnet-56`) or `resnet18`, with the MLP's default hidden sizes.
    pub fn parse(name: &str) -> Result<Self> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "mlp" => Ok(Self::mlp()),
            "lenet" | "lenet5" | "lenet-5" => Ok(Self::Lenet),
            "resnet" => Ok(Self::Resnet { depth: 20 }),
            "resnet18" | "resnet-18" => Ok(Self::Resnet18),
            other => match other.strip_prefix("resnet").map(|d| d.trim_start_matches('-').parse::<usize>()) {
                Some(Ok(depth)) => Self::resnet(depth),
                _ => Err(EngineError::InvalidArgument(format!(
                    "unknown model '{other}'; use mlp, lenet, resnet (with a depth 6n+2: resnet20, resnet56...) or resnet18"
                ))),
            },
        }
    }

    /// The CIFAR ResNet of `depth` layers, which must be 6n + 2 with n at least 1.
    pub fn resnet(depth: usize) -> Result<Self> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(EngineError::InvalidArgument(format!(
                "a CIFAR ResNet has 6n+2 layers (8, 14, 20, 32, 44, 56, 110...); {depth} is not one"
            )));
        }
        if depth > MAX_RESNET_DEPTH {
            return Err(EngineError::InvalidArgument(format!(
                "a CIFAR ResNet of {depth} layers is deeper than the {MAX_RESNET_DEPTH} asgd builds; use a smaller depth"
            )));
        }
        Ok(Self::Resnet { depth })
    }

    /// The name written into checkpoints (`mlp`, `lenet`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mlp { .. } => "mlp",
            Self::Lenet => "lenet",
            Self::Resnet { .. } => "resnet",
            Self::Resnet18 => "resnet18",
        }
    }

    /// A description that, with [`ModelConfig::from_description`], rebuilds the same
    /// architecture: `mlp:512,512`, `lenet`, `resnet:20` or `resnet18`. Stored in
    /// checkpoint metadata.
    pub fn description(&self) -> String {
        match self {
            Self::Mlp { hidden } => {
                let sizes: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
                format!("mlp:{}", sizes.join(","))
            }
            Self::Lenet => "lenet".into(),
            Self::Resnet { depth } => format!("resnet:{depth}"),
            Self::Resnet18 => "resnet18".into(),
        }
    }

    /// Inverse of [`ModelConfig::description`].
    pub fn from_description(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some(("mlp", sizes)) => {
                let hidden = if sizes.is_empty() {
                    Vec::new()
                } else {
                    sizes
                        .split(',')
                        .map(|v| v.trim().parse::<usize>().ok().filter(|&h| h > 0))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| EngineError::InvalidArgument(format!("bad MLP description '{s}'")))?
                };
                Ok(Self::Mlp { hidden })
            }
            Some(("resnet", depth)) => match depth.trim().parse() {
                Ok(d) => Self::resnet(d),
                Err(_) => Err(EngineError::InvalidArgument(format!("bad ResNet description '{s}'"))),
            },
            _ => Self::parse(s),
        }
    }

    /// The parameters of the fully connected layers for `input` and `classes` (for the MLP,
    /// every parameter; for the others, the classifier), or `None` when that overflows 64
    /// bits. Computed without allocating, to refuse sizes that cannot be built.
    pub fn dense_params(&self, input: [usize; 3], classes: usize) -> Option<u64> {
        let dense = |widths: &[u64]| {
            widths.windows(2).try_fold(0u64, |acc, w| acc.checked_add(w[0].checked_mul(w[1])?.checked_add(w[1])?))
        };
        let classes = classes as u64;
        match self {
            Self::Mlp { hidden } => {
                let features = input.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))?;
                let widths: Vec<u64> =
                    std::iter::once(features).chain(hidden.iter().map(|&h| h as u64)).chain([classes]).collect();
                dense(&widths)
            }
            Self::Lenet => dense(&[400, 120, 84, classes]),
            Self::Resnet { .. } => dense(&[64, classes]),
            Self::Resnet18 => dense(&[512, classes]),
        }
    }

    /// Refuses, before anything is allocated, a model that asgd cannot build: more than
    /// [`MAX_CLASSES`] classes or more than [`MAX_PARAMS`] parameters.
    pub fn check_size(&self, input: [usize; 3], classes: usize) -> Result<()> {
        if classes == 0 || classes > MAX_CLASSES {
            return Err(EngineError::InvalidArgument(format!(
                "model {} cannot have {classes} classes: asgd builds classifiers of 1 to {MAX_CLASSES} classes",
                self.description()
            )));
        }
        match self.dense_params(input, classes) {
            Some(n) if n <= MAX_PARAMS => Ok(()),
            n => Err(EngineError::InvalidArgument(format!(
                "model {} on inputs of {input:?} would have {} parameters, more than the {MAX_PARAMS} asgd builds; \
                 use smaller layers",
                self.description(),
                n.map_or("more than 2^64".to_string(), |n| n.to_string())
            ))),
        }
    }

    /// Builds the model for images of `input` = (channels, height, width) and `classes`
    /// outputs, with parameters initialised as PyTorch does from a generator seeded by `seed`.
    /// Sizes are checked first ([`ModelConfig::check_size`], then each tensor against the
    /// device's limit).
    pub fn build(&self, dev: &Device, input: [usize; 3], classes: usize, seed: u64) -> Result<Model> {
        self.check_size(input, classes)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        match self {
            Self::Mlp { hidden } => {
                layers.push(Box::new(Flatten::new("flatten")));
                let mut width = input.iter().product();
                for (i, &h) in hidden.iter().enumerate() {
                    layers.push(Box::new(Linear::new(dev, &format!("fc{}", i + 1), width, h, &mut rng)?));
                    layers.push(Box::new(Relu::new(&format!("relu{}", i + 1))));
                    width = h;
                }
                let last = format!("fc{}", hidden.len() + 1);
                layers.push(Box::new(Linear::new(dev, &last, width, classes, &mut rng)?));
            }
            Self::Lenet => {
                let [c, h, w] = input;
                if h < 16 || w < 16 {
                    return Err(EngineError::InvalidArgument(format!(
                        "lenet needs images of at least 16x16 (it is built for 28x28), but the data has \
                         {h}x{w}; use mlp or a 28x28 dataset (mnist, fashion-mnist)"
                    )));
                }
                layers.push(Box::new(Conv2d::new(dev, "conv1", c, 6, 5, 1, 2, &mut rng)?));
                layers.push(Box::new(Relu::new("relu1")));
                layers.push(Box::new(MaxPool2d::new("pool1", 2)));
                layers.push(Box::new(Conv2d::new(dev, "conv2", 6, 16, 5, 1, 0, &mut rng)?));
                layers.push(Box::new(Relu::new("relu2")));
                layers.push(Box::new(MaxPool2d::new("pool2", 2)));
                layers.push(Box::new(Flatten::new("flatten")));
                // 16 x 5 x 5 = 400 for 28x28 inputs; derived so other sizes work too.
                let (fh, fw) = ((h / 2 - 4) / 2, (w / 2 - 4) / 2);
                layers.push(Box::new(Linear::new(dev, "fc1", 16 * fh * fw, 120, &mut rng)?));
                layers.push(Box::new(Relu::new("relu3")));
                layers.push(Box::new(Linear::new(dev, "fc2", 120, 84, &mut rng)?));
                layers.push(Box::new(Relu::new("relu4")));
                layers.push(Box::new(Linear::new(dev, "fc3", 84, classes, &mut rng)?));
            }
            Self::Resnet { depth } => {
                let n = (depth - 2) / 6;
                layers = resnet::build(dev, input[0], &[(16, n), (32, n), (64, n)], classes, &mut rng)?;
            }
            Self::Resnet18 => {
                layers = resnet::build(dev, input[0], &[(64, 2), (128, 2), (256, 2), (512, 2)], classes, &mut rng)?;
            }
        }
        Model::new(dev, self.kind(), &input, layers)
    }
}
