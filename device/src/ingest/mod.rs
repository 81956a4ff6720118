//! Getting radiographs in: which files in the capture folder count ([`folder`]), waking up
//! on file-system events ([`watch`]), where files go afterwards ([`disposal`]), and turning
//! bytes into one gray plane ([`format`] sniffs, [`decode`] dispatches, [`dicom`] handles
//! DICOM's pixel pipeline).

pub mod decode;
pub mod dicom;
pub mod disposal;
pub mod folder;
pub mod format;
pub mod watch;
