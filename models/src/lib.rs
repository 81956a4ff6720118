//! fracture-models: the detectors (YOLOv11, Faster R-CNN ResNet50-FPN v2) in libtorch through
//! `tch`, and everything around them that host tools and the device daemon must share so that
//! training and deployment see the same numbers: pixel decoding, letterboxing, box geometry,
//! detection metrics.

pub mod boxes;
pub mod boxes_tch;
pub mod bundle;
pub mod compute_device;
pub mod denormals;
pub mod detector;
pub mod frcnn;
pub mod heap;
pub mod letterbox;
pub mod metrics;
pub mod nms;
pub mod onnx;
pub mod packed_conv;
pub mod pixels;
pub mod tensor;
pub mod weights_file;
pub mod yolo;
