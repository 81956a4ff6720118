//! Running a model bundle on the machine at hand: the ONNX Runtime backend (library loading,
//! sessions, the YOLO11 and Faster R-CNN graphs) and the TensorRT backend (the engine cache, the YOLO11 engine)
//! next to the libtorch predictors of `fracture-models`, all sharing one letterbox, NMS and
//! box-mapping path.

pub mod backend;
pub mod engine_cache;
pub mod engine_source;
pub mod frcnn_ort;
pub mod ort_library;
pub mod ort_model;
pub mod yolo_ort;
pub mod yolo_trt;

pub use engine_cache::{CachedEngine, EngineCacheError, Provenance, find_or_build};
pub use frcnn_ort::{FrcnnGeometry, FrcnnInput, FrcnnOrt, FrcnnOrtError};
pub use ort_library::{GraphOptimization, Int8Weights, OrtLibraryError, OrtOptions};
pub use ort_model::{OrtModel, OrtModelError};
pub use yolo_ort::{YoloOrt, YoloOrtError};
pub use yolo_trt::{YoloTrt, YoloTrtError};
