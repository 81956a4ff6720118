//! Shared by the parity tests: running a Python reference script of `tests/peers/` from the
//! project's virtualenv (created by `scripts/setup`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tests/peers/<script> --out DIR --case C...` once and returns DIR.
pub fn run_reference(script: &str, cases: &[&str]) -> Result<tempfile::TempDir, String> {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        return Err(format!("{} is missing: run scripts/setup", python.display()));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&python);
    cmd.arg(repo_root().join("tests/peers").join(script)).arg("--out").arg(dir.path());
    for c in cases {
        cmd.arg("--case").arg(c);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e} (run scripts/setup)", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{script} failed (run scripts/setup if the peers are missing):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}
