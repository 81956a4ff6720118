//! Shared by the end-to-end tests: running the real `fracture` binary.
#![allow(dead_code)]

use std::process::Command;

/// Runs `fracture ARGS`, asserts success, and returns stdout and stderr together.
pub fn fracture(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_fracture")).args(args).output().expect("fracture runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "fracture {args:?} failed:\n{text}");
    text
}
