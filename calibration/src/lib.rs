//! fracture-calibration: what INT8 calibration needs to be reproducible and portable. Today it
//! holds the calibration-set manifest; activation statistics, threshold search and TensorRT
//! calibration caches join it with the export/calibration work.

pub mod manifest;
