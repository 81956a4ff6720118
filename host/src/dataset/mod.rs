//! FracAtlas-style datasets: where files live, what a record holds, reading (with integrity
//! checks and duplicate detection), writing, and splitting.

pub mod duplicates;
pub mod labels;
pub mod layout;
pub mod loader;
pub mod metadata;
pub mod record;
pub mod split;
pub mod writer;

pub use loader::{Dataset, DatasetError, ImageRecord, IntegrityIssue};
pub use record::{BodyPart, ImageMeta, PixelBox, View};
