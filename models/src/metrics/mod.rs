//! Detection metrics (being written).
