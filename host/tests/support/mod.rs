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

/// Runs `fracture ARGS`, asserts success, and returns stdout alone (for `--json` output).
pub fn fracture_stdout(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_fracture")).args(args).output().expect("fracture runs");
    assert!(
        out.status.success(),
        "fracture {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `fracture ARGS`, asserts failure, and returns stderr (the error message).
pub fn fracture_fails(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_fracture")).args(args).output().expect("fracture runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "fracture {args:?} should have failed:\n{err}");
    err
}
