//! The review domain behind the screen: the worklist and each image's status
//! ([`worklist`]), one image's full record ([`record`]), and the decisions people record
//! ([`decisions`]). Plain functions over the database; the HTTP layer only translates.

pub mod decisions;
pub mod record;
pub mod worklist;

pub use decisions::{PixelBox, ReviewError, Verdict};
pub use record::{ImageRecord, image_record};
pub use worklist::{Worklist, worklist};
