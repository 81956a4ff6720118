//! The YOLO11 graph: `yolo11.yaml`'s backbone and head rows as a table, built the way
//! ultralytics' `parse_model` builds them (channels and repeats scaled by [`Scale`], C3k forced
//! on for m/l/x), and run layer by layer with the saved outputs that Concat and Detect read.
//! Layer `i` lives under `model.i` so variable names are ultralytics' state_dict keys.

use tch::{Kind, Tensor, nn};

use super::attention::C2Psa;
use super::blocks::{C3k2, Sppf, set_fused};
use super::conv::Conv;
use super::decode::decode;
use super::head::{Detect, STRIDES};
use super::{YoloConfig, YoloError};

/// One YAML module with its unscaled arguments.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// `Conv, [c, k, s]`
    Conv { c: i64, k: i64, s: i64 },
    /// `C3k2, [c, c3k, e]`
    C3k2 { c: i64, c3k: bool, e: f64 },
    /// `SPPF, [c, k]`
    Sppf { c: i64, k: i64 },
    /// `C2PSA, [c]`
    C2Psa { c: i64 },
    /// `nn.Upsample, [None, 2, "nearest"]`
    Upsample,
    /// `Concat, [1]`
    Concat,
    /// `Detect, [nc]`
    Detect,
}

/// `[from, repeats, module, args]`; `-1` is the previous layer.
type Row = (&'static [i64], i64, Spec);

/// Layers 0-10 of [`YOLO11`]: the backbone, ending in C2PSA at stride 32.
pub const BACKBONE_LAYERS: usize = 11;

/// `yolo11.yaml`, backbone (0-10) then head (11-23).
const YOLO11: [Row; 24] = [
    (&[-1], 1, Spec::Conv { c: 64, k: 3, s: 2 }),  // 0 P1/2
    (&[-1], 1, Spec::Conv { c: 128, k: 3, s: 2 }), // 1 P2/4
    (&[-1], 2, Spec::C3k2 { c: 256, c3k: false, e: 0.25 }),
    (&[-1], 1, Spec::Conv { c: 256, k: 3, s: 2 }), // 3 P3/8
    (&[-1], 2, Spec::C3k2 { c: 512, c3k: false, e: 0.25 }),
    (&[-1], 1, Spec::Conv { c: 512, k: 3, s: 2 }), // 5 P4/16
    (&[-1], 2, Spec::C3k2 { c: 512, c3k: true, e: 0.5 }),
    (&[-1], 1, Spec::Conv { c: 1024, k: 3, s: 2 }), // 7 P5/32
    (&[-1], 2, Spec::C3k2 { c: 1024, c3k: true, e: 0.5 }),
    (&[-1], 1, Spec::Sppf { c: 1024, k: 5 }), // 9
    (&[-1], 2, Spec::C2Psa { c: 1024 }),      // 10
    (&[-1], 1, Spec::Upsample),
    (&[-1, 6], 1, Spec::Concat), // cat backbone P4
    (&[-1], 2, Spec::C3k2 { c: 512, c3k: false, e: 0.5 }), // 13
    (&[-1], 1, Spec::Upsample),
    (&[-1, 4], 1, Spec::Concat), // cat backbone P3
    (&[-1], 2, Spec::C3k2 { c: 256, c3k: false, e: 0.5 }), // 16 (P3/8-small)
    (&[-1], 1, Spec::Conv { c: 256, k: 3, s: 2 }),
    (&[-1, 13], 1, Spec::Concat),                          // cat head P4
    (&[-1], 2, Spec::C3k2 { c: 512, c3k: false, e: 0.5 }), // 19 (P4/16-medium)
    (&[-1], 1, Spec::Conv { c: 512, k: 3, s: 2 }),
    (&[-1, 10], 1, Spec::Concat),                          // cat head P5
    (&[-1], 2, Spec::C3k2 { c: 1024, c3k: true, e: 0.5 }), // 22 (P5/32-large)
    (&[16, 19, 22], 1, Spec::Detect),                      // Detect(P3, P4, P5)
];

/// A built layer (everything but Detect).
#[derive(Debug)]
pub(crate) enum Layer {
    Conv(Conv),
    C3k2(C3k2),
    Sppf(Sppf),
    C2Psa(C2Psa),
    Upsample,
    Concat,
}

impl Layer {
    fn forward(&self, xs: &[&Tensor], train: bool) -> Tensor {
        match (self, xs) {
            (Layer::Conv(m), [x, ..]) => m.forward(x, train),
            (Layer::C3k2(m), [x, ..]) => m.forward(x, train),
            (Layer::Sppf(m), [x, ..]) => m.forward(x, train),
            (Layer::C2Psa(m), [x, ..]) => m.forward(x, train),
            (Layer::Upsample, [x, ..]) => {
                let s = x.size();
                x.upsample_nearest2d([s[2] * 2, s[3] * 2], 2.0, 2.0)
            }
            (Layer::Concat, xs) => Tensor::cat(xs, 1),
            (_, []) => Tensor::new(),
        }
    }

    fn fuse(&mut self, on: bool) {
        match self {
            Layer::Conv(c) => set_fused(c, on),
            Layer::C3k2(m) => m.fuse(on),
            Layer::Sppf(m) => m.fuse(on),
            Layer::C2Psa(m) => m.fuse(on),
            Layer::Upsample | Layer::Concat => {}
        }
    }
}

/// Where a layer reads from: the previous layer (the image for layer 0) or layer `j`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input {
    Previous,
    Layer(usize),
}

impl Input {
    fn from_yaml(f: i64) -> Self {
        if f < 0 { Input::Previous } else { Input::Layer(f as usize) }
    }
}

/// A layer with its inputs.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) from: Vec<Input>,
    pub(crate) layer: Layer,
}

/// A YOLO11 detection model.
#[derive(Debug)]
pub struct Yolo {
    cfg: YoloConfig,
    pub(crate) nodes: Vec<Node>,
    /// Whether layer `i`'s output is read by a later non-adjacent layer.
    saved: Vec<bool>,
    pub(crate) detect_from: Vec<usize>,
    pub(crate) detect: Detect,
}

impl Yolo {
    /// Builds the model under `p.sub("model")` (pass the VarStore root to get ultralytics'
    /// key names). Weights start with PyTorch's default init and ultralytics' head biases.
    pub fn new(p: &nn::Path, cfg: &YoloConfig) -> Result<Self, YoloError> {
        if cfg.num_classes < 1 {
            return Err(YoloError::NumClasses(cfg.num_classes));
        }
        let scale = cfg.scale;
        let root = p.sub("model");
        let mut nodes = Vec::with_capacity(YOLO11.len() - 1);
        let mut ch: Vec<i64> = Vec::with_capacity(YOLO11.len());
        let mut detect = None;
        let mut detect_from = Vec::new();
        for (i, &(from, n, spec)) in YOLO11.iter().enumerate() {
            let from: Vec<Input> = from.iter().map(|&f| Input::from_yaml(f)).collect();
            // Channels of each input; layer 0 reads the 3-channel image.
            let cin: Vec<i64> = from
                .iter()
                .map(|inp| match *inp {
                    Input::Previous => ch.last().copied().unwrap_or(3),
                    Input::Layer(j) => ch[j],
                })
                .collect();
            let c1 = cin[0];
            let n = scale.repeats(n);
            let q = root.sub(i);
            let (layer, c2) = match spec {
                Spec::Conv { c, k, s } => {
                    let c2 = scale.channels(c);
                    (Layer::Conv(Conv::new(&q, c1, c2, k, s)), c2)
                }
                Spec::C3k2 { c, c3k, e } => {
                    let c2 = scale.channels(c);
                    (Layer::C3k2(C3k2::new(&q, c1, c2, n, c3k || scale.forces_c3k(), e)), c2)
                }
                Spec::Sppf { c, k } => {
                    let c2 = scale.channels(c);
                    (Layer::Sppf(Sppf::new(&q, c1, c2, k)), c2)
                }
                Spec::C2Psa { c } => {
                    let c2 = scale.channels(c);
                    debug_assert_eq!(c1, c2, "C2PSA keeps its channels");
                    (Layer::C2Psa(C2Psa::new(&q, c1, n)), c2)
                }
                Spec::Upsample => (Layer::Upsample, c1),
                Spec::Concat => (Layer::Concat, cin.iter().sum()),
                Spec::Detect => {
                    detect = Some(Detect::new(&q, cfg.num_classes, &cin));
                    detect_from = from
                        .iter()
                        .map(|inp| match *inp {
                            Input::Previous => i - 1,
                            Input::Layer(j) => j,
                        })
                        .collect();
                    break;
                }
            };
            ch.push(c2);
            nodes.push(Node { from, layer });
        }
        let detect = detect.ok_or(YoloError::Graph("the layer table has no Detect row"))?;
        let mut saved = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            for inp in &node.from {
                if let Input::Layer(j) = *inp {
                    saved[j] |= j + 1 != i;
                }
            }
        }
        detect_from.iter().for_each(|&j| saved[j] = true);
        Ok(Self { cfg: *cfg, nodes, saved, detect_from, detect })
    }

    /// Per-level raw head outputs `[B, 4·16 + nc, H/s, W/s]` for strides 8, 16, 32.
    /// `x`: `[B, 3, H, W]` float in `[0, 1]`, `H` and `W` multiples of 32 (see
    /// [`Yolo::check_input`]; other shapes make libtorch panic). `train` runs batch norms in
    /// training mode (batch statistics, running-stat updates).
    pub fn forward_raw(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut outs: Vec<Option<Tensor>> = Vec::with_capacity(self.nodes.len());
        let mut y = x.shallow_clone();
        for (i, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<&Tensor> = node
                .from
                .iter()
                .map(|inp| match *inp {
                    Input::Layer(j) if j + 1 != i => saved_output(&outs, j),
                    _ => &y,
                })
                .collect();
            let out = node.layer.forward(&inputs, train);
            outs.push(self.saved[i].then(|| out.shallow_clone()));
            y = out;
        }
        let feats: Vec<Tensor> =
            self.detect_from.iter().map(|&j| saved_output(&outs, j).shallow_clone()).collect();
        self.detect.forward(&feats, train)
    }

    /// Per-image embedding: the backbone's last block (layer 10, C2PSA, stride 32) averaged over
    /// its spatial positions. `x` as for [`Yolo::forward_raw`]; batch norms in eval mode; run
    /// inside `tch::no_grad`.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        // Backbone layers read only the previous layer's output: a plain chain.
        let mut y = x.shallow_clone();
        for node in &self.nodes[..BACKBONE_LAYERS] {
            y = node.layer.forward(&[&y], false);
        }
        // [B, C, H/32, W/32] -> [B, C] (float32 whatever the forward's precision)
        y.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    }

    /// ultralytics' inference output `[B, 4 + nc, N]`: `cx, cy, w, h` in input pixels and
    /// sigmoid class scores, anchors ordered P3, P4, P5 row-major. Batch norms in eval mode;
    /// run inside `tch::no_grad` when no gradients are needed.
    pub fn forward_inference(&self, x: &Tensor) -> Tensor {
        self.decode(&self.forward_raw(x, false))
    }

    /// Raw per-level outputs (from [`Yolo::forward_raw`]) to `[B, 4 + nc, N]`, for callers that
    /// need both (validation computes the loss on the raw maps and metrics on the boxes).
    /// Half-precision maps are decoded in float32 (box coordinates in bfloat16 would be
    /// quantised to 2 px above 256).
    pub fn decode(&self, raw: &[Tensor]) -> Tensor {
        let half = |t: &Tensor| matches!(t.kind(), Kind::Half | Kind::BFloat16);
        let (nc, reg_max) = (self.cfg.num_classes, self.detect.reg_max());
        if raw.iter().any(half) || half(self.detect.dfl_weight()) {
            let raw: Vec<Tensor> = raw.iter().map(|t| t.to_kind(Kind::Float)).collect();
            let dfl = self.detect.dfl_weight().to_kind(Kind::Float);
            return decode(&raw, &STRIDES, reg_max, nc, &dfl);
        }
        decode(raw, &STRIDES, reg_max, nc, self.detect.dfl_weight())
    }

    /// Validates an input batch: 4-D float `[B, 3, H, W]` with `B ≥ 1` and `H`, `W` positive
    /// multiples of 32.
    pub fn check_input(x: &Tensor) -> Result<(), YoloError> {
        let s = x.size();
        let ok_kind = matches!(x.kind(), Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double);
        match s.as_slice() {
            &[b, 3, h, w]
                if ok_kind && b >= 1 && h >= 32 && w >= 32 && h % 32 == 0 && w % 32 == 0 =>
            {
                Ok(())
            }
            _ => Err(YoloError::Input { shape: s, kind: x.kind() }),
        }
    }

    /// Folds every batch norm into its convolution for inference (ultralytics' `fuse`). Reads
    /// the current variables: fuse after loading weights; [`Yolo::unfuse`] before training.
    pub fn fuse(&mut self) {
        self.set_fused(true);
    }

    /// Drops the folded copies and computes with conv + batch norm again.
    pub fn unfuse(&mut self) {
        self.set_fused(false);
    }

    fn set_fused(&mut self, on: bool) {
        self.nodes.iter_mut().for_each(|n| n.layer.fuse(on));
        self.detect.fuse(on);
    }

    pub fn config(&self) -> &YoloConfig {
        &self.cfg
    }

    pub fn num_classes(&self) -> i64 {
        self.cfg.num_classes
    }

    /// DFL bins per box side (16).
    pub fn reg_max(&self) -> i64 {
        self.detect.reg_max()
    }

    /// Strides of the three output levels.
    pub fn strides(&self) -> [f64; 3] {
        STRIDES
    }

    /// Training-time dropout before the head's last convs (the study's head-dropout
    /// regulariser; 0 by default, which is ultralytics' network).
    pub fn set_head_dropout(&mut self, p: f64) {
        self.detect.set_dropout(p);
    }

    /// The detection head (for the DFL weight in losses and custom decoding).
    pub fn head(&self) -> &Detect {
        &self.detect
    }
}

/// The kept output of layer `j`; the build marks every non-adjacent input as saved.
fn saved_output(outs: &[Option<Tensor>], j: usize) -> &Tensor {
    outs.get(j).and_then(Option::as_ref).expect("graph invariant: layer inputs are saved outputs")
}
