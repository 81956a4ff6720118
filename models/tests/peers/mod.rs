//! Shared by the parity tests: running a Python reference script of `tests/peers/` from the
//! project's virtualenv (created by `scripts/setup`), reading back what it wrote, and the
//! difference measure the tests compare with.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Kind, Tensor};

/// One case a reference script wrote: its folder, `meta.json` (`Null` when the case has
/// none) and the tensors of `tensors.safetensors` by name.
pub struct Reference {
    pub dir: PathBuf,
    pub meta: serde_json::Value,
    pub t: HashMap<String, Tensor>,
}

/// Reads case `name` under `root`.
pub fn load_reference(root: &Path, name: &str) -> Reference {
    let dir = root.join(name);
    let meta = match std::fs::read_to_string(dir.join("meta.json")) {
        Ok(s) => serde_json::from_str(&s).expect("meta.json"),
        Err(_) => serde_json::Value::Null,
    };
    let t = Tensor::read_safetensors(dir.join("tensors.safetensors"))
        .expect("tensors.safetensors")
        .into_iter()
        .collect();
    Reference { dir, meta, t }
}

/// Largest absolute difference, computed in f64 (0 for empty tensors).
pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    if a.numel() == 0 {
        return 0.0;
    }
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

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
