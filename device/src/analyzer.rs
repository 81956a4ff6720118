//! The seam where inference plugs in. The worker hands every decoded image to an
//! [`Analyzer`]; what comes back (findings in original pixels, per-stage timings) is logged
//! with the analyzer's [`ModelIdentity`]. [`NoModel`] is what the daemon runs without a
//! bundle: every image is logged as `not_analysed`, and the daemon says so.

use fracture_models::bundle::Bundle;
use fracture_models::pixels::GrayF32;
use serde::Serialize;

/// Which model made a run (all of it is logged with every run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelIdentity {
    pub bundle_id: String,
    pub bundle_sha256: String,
    /// `libtorch-cpu`, `libtorch-cuda`, `tensorrt`, `onnxruntime`, ...
    pub backend: String,
    /// `fp32`, `fp16`, `int8`.
    pub precision: String,
    /// Why this backend runs the bundle (and why the ones tried before it did not).
    pub backend_reason: String,
}

impl ModelIdentity {
    /// `bundle` run by `backend` at `precision`; the reason is set by whoever chose it.
    pub fn for_bundle(bundle: &Bundle, backend: &str, precision: &str) -> Self {
        Self {
            bundle_id: bundle.manifest.bundle_id.clone(),
            bundle_sha256: bundle.sha256.clone(),
            backend: backend.to_string(),
            precision: precision.to_string(),
            backend_reason: String::new(),
        }
    }
}

/// Runs one blank image of the bundle's input size through a freshly loaded analyzer, so the
/// first radiograph does not pay for lazy initialisation (and a model that cannot run is
/// refused at start, not on a patient's image).
pub fn warm_up(analyzer: &dyn Analyzer, imgsz: u32) -> Result<(), AnalyzeError> {
    analyzer.analyze(&GrayF32::new(imgsz, imgsz, 0.5)).map(|_| ())
}

/// The bundle's two operating points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatingPoint {
    /// High sensitivity: worth a second look.
    Suspicious,
    /// High specificity.
    Definite,
}

impl OperatingPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspicious => "suspicious",
            Self::Definite => "definite",
        }
    }
}

/// One detection, in the original image's pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// In [0, 1].
    pub score: f32,
    pub class_id: u32,
    pub class_name: String,
    pub operating_point: OperatingPoint,
}

/// Time spent in one named stage (`decode`, `preprocess`, `infer`, `nms`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTiming {
    pub stage: String,
    pub ms: f64,
}

impl StageTiming {
    pub fn new(stage: &str, elapsed: std::time::Duration) -> Self {
        Self { stage: stage.to_string(), ms: elapsed.as_secs_f64() * 1e3 }
    }
}

/// What an analyzer returns for one image.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub findings: Vec<Finding>,
    pub timings: Vec<StageTiming>,
}

/// An analyzer's failure on one image; the job is marked failed with this message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AnalyzeError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl AnalyzeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }
}

/// A detector's boxes as findings: class names from the bundle, and each marked definite when
/// it reaches the bundle's `definite` threshold (all of them reach `suspicious`).
pub fn findings_from(
    found: Vec<fracture_models::detector::Finding>,
    classes: &[String],
    points: &fracture_models::bundle::OperatingPoints,
) -> Vec<Finding> {
    found
        .into_iter()
        .map(|f| Finding {
            x1: f.x1,
            y1: f.y1,
            x2: f.x2,
            y2: f.y2,
            score: f.score,
            class_id: u32::try_from(f.class).unwrap_or(u32::MAX),
            class_name: usize::try_from(f.class)
                .ok()
                .and_then(|i| classes.get(i))
                .cloned()
                .unwrap_or_else(|| f.class.to_string()),
            operating_point: if f.score >= points.definite {
                OperatingPoint::Definite
            } else {
                OperatingPoint::Suspicious
            },
        })
        .collect()
}

/// The three timed stages of a backend running an exported graph (ONNX Runtime, TensorRT):
/// `preprocess` (letterbox or resize, giving the input and the geometry `G` to map boxes
/// back with), `infer` (the forward pass), `nms` (NMS where the graph leaves it to us, and
/// boxes to original pixels).
pub fn timed_stages<I, G, P, E: std::error::Error + Send + Sync + 'static>(
    image: &GrayF32,
    preprocess: impl FnOnce(&GrayF32) -> Result<(I, G), E>,
    forward: impl FnOnce(&I) -> Result<P, E>,
    postprocess: impl FnOnce(&P, &G) -> Result<Vec<fracture_models::detector::Finding>, E>,
) -> Result<(Vec<fracture_models::detector::Finding>, Vec<StageTiming>), AnalyzeError> {
    let fail = |e: E| AnalyzeError {
        message: format!("inference failed: {e}"),
        source: Some(Box::new(e)),
    };
    let t0 = std::time::Instant::now();
    let (input, geometry) = preprocess(image).map_err(fail)?;
    let t1 = std::time::Instant::now();
    let pred = forward(&input).map_err(fail)?;
    let t2 = std::time::Instant::now();
    let found = postprocess(&pred, &geometry).map_err(fail)?;
    let t3 = std::time::Instant::now();
    let timings = vec![
        StageTiming::new("preprocess", t1 - t0),
        StageTiming::new("infer", t2 - t1),
        StageTiming::new("nms", t3 - t2),
    ];
    Ok((found, timings))
}

/// Runs a model on one decoded image.
pub trait Analyzer {
    /// The model behind this analyzer; `None` means images are logged as not analysed.
    fn model(&self) -> Option<&ModelIdentity>;
    /// Records why this backend was chosen; it is logged with every run. (No-op without a
    /// model.)
    fn set_backend_reason(&mut self, _reason: String) {}
    /// Findings (boxes in the original image's pixels) and per-stage timings.
    fn analyze(&self, image: &GrayF32) -> Result<Analysis, AnalyzeError>;
}

/// A boxed analyzer chosen at run time (a bundle, or none).
impl<T: Analyzer + ?Sized> Analyzer for Box<T> {
    fn model(&self) -> Option<&ModelIdentity> {
        (**self).model()
    }

    fn set_backend_reason(&mut self, reason: String) {
        (**self).set_backend_reason(reason);
    }

    fn analyze(&self, image: &GrayF32) -> Result<Analysis, AnalyzeError> {
        (**self).analyze(image)
    }
}

/// No bundle installed: nothing is detected, every run is `not_analysed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoModel;

impl Analyzer for NoModel {
    fn model(&self) -> Option<&ModelIdentity> {
        None
    }

    fn analyze(&self, _image: &GrayF32) -> Result<Analysis, AnalyzeError> {
        Ok(Analysis::default())
    }
}
