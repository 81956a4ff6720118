//! Builds the shims of `shim/trt_shim.h`:
//!
//! - always, the fake (`shim/fake_shim.c`) as `libfracture_trt_fake*.so` in `OUT_DIR`, for
//!   tests (never next to the executables, so a product binary cannot pick it up);
//! - where TensorRT's headers are found, the real shim (`shim/trt_shim.cpp`) as
//!   `libfracture_trt_shim.so`, copied next to the build's executables (`target/<profile>/`)
//!   where the loader looks. A real-shim compile failure is a warning, not a failed build;
//!   the status (`built:`, `skipped:` or `failed:`) reaches the crate as
//!   `FRACTURE_TRT_REAL_SHIM_STATUS` and a test prints it, so CI never skips silently.
//!
//! No Rust artefact links TensorRT or CUDA; only the real shim library does.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const HEADER_ENV: [&str; 5] =
    ["TENSORRT_ROOT", "TENSORRT_INCLUDE", "TENSORRT_LIB", "CUDA_HOME", "FRACTURE_TRT_NO_REAL_SHIM"];

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let shim = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("shim");
    for f in ["trt_shim.h", "trt_shim.cpp", "fake_shim.c"] {
        println!("cargo:rerun-if-changed=shim/{f}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    for v in HEADER_ENV {
        println!("cargo:rerun-if-env-changed={v}");
    }

    build_fakes(&shim, &out);
    let status = build_real(&shim, &out);
    let one_line = status.replace(['\n', '\r'], " | ");
    std::fs::write(out.join("real_shim_status.txt"), &status).expect("write the status file");
    println!("cargo:rustc-env=FRACTURE_TRT_REAL_SHIM_STATUS={one_line}");
    println!("cargo:rustc-env=FRACTURE_TRT_FAKE_DIR={}", out.display());
    println!("cargo:status={one_line}");
}

fn compiler(cpp: bool) -> Command {
    cc::Build::new().cpp(cpp).cargo_metadata(false).get_compiler().to_command()
}

fn build_fakes(shim: &Path, out: &Path) {
    let variants: [(&str, &[&str]); 3] = [
        ("libfracture_trt_fake.so", &[]),
        ("libfracture_trt_fake_noenqueue.so", &["-DFAKE_OMIT_ENQUEUE"]),
        ("libfracture_trt_fake_abi99.so", &["-DFAKE_ABI_VERSION=99u"]),
    ];
    for (name, defines) in variants {
        let mut cmd = compiler(false);
        cmd.args(["-std=c11", "-O1", "-Wall", "-shared", "-fPIC"])
            .args(defines)
            .arg("-I")
            .arg(shim)
            .arg(shim.join("fake_shim.c"))
            .arg("-o")
            .arg(out.join(name));
        let result = cmd.output().expect("run the C compiler for the fake shim");
        assert!(
            result.status.success(),
            "compiling the fake TensorRT shim failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

/// Where TensorRT's headers may be, in search order.
fn header_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = env::var_os("TENSORRT_INCLUDE") {
        dirs.push(PathBuf::from(p));
    }
    if let Some(p) = env::var_os("TENSORRT_ROOT") {
        dirs.push(PathBuf::from(p).join("include"));
    }
    for d in [
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
        "/usr/local/tensorrt/include",
        "/usr/include",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

fn lib_candidates(include: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = env::var_os("TENSORRT_LIB") {
        dirs.push(PathBuf::from(p));
    }
    if let Some(p) = env::var_os("TENSORRT_ROOT") {
        dirs.push(PathBuf::from(p).join("lib"));
    }
    if let Some(parent) = include.parent() {
        dirs.push(parent.join("lib"));
    }
    let cuda =
        env::var_os("CUDA_HOME").map_or_else(|| PathBuf::from("/usr/local/cuda"), PathBuf::from);
    for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/tensorrt/lib"]
    {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(cuda.join("lib64"));
    dirs.push(cuda.join("targets/aarch64-linux/lib"));
    dirs.push(cuda.join("targets/x86_64-linux/lib"));
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

fn cuda_include() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = env::var_os("CUDA_HOME") {
        dirs.push(PathBuf::from(p).join("include"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.push(PathBuf::from("/usr/include"));
    dirs.into_iter().find(|d| d.join("cuda_runtime_api.h").is_file())
}

fn build_real(shim: &Path, out: &Path) -> String {
    if env::var_os("FRACTURE_TRT_NO_REAL_SHIM").is_some() {
        let msg = "skipped: FRACTURE_TRT_NO_REAL_SHIM is set; the real shim was not built (tests use the fake)";
        println!("cargo:warning={msg}");
        return msg.to_string();
    }
    let candidates = header_candidates();
    let Some(include) = candidates
        .iter()
        .find(|d| d.join("NvInfer.h").is_file() && d.join("NvOnnxParser.h").is_file())
    else {
        let list: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
        let msg = format!(
            "skipped: TensorRT headers not found in {}; the real shim was not built (tests use the fake)",
            list.join(", ")
        );
        println!("cargo:warning={msg}");
        return msg;
    };
    let Some(cuda) = cuda_include() else {
        let msg = format!(
            "failed: TensorRT headers found in {} but cuda_runtime_api.h is in none of $CUDA_HOME/include, /usr/local/cuda/include, /usr/include",
            include.display()
        );
        println!("cargo:warning={msg}");
        return msg;
    };
    let lib = out.join("libfracture_trt_shim.so");
    let mut cmd = compiler(true);
    cmd.args(["-std=c++17", "-O2", "-Wall", "-shared", "-fPIC"])
        .arg("-I")
        .arg(shim)
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(&cuda)
        .arg(shim.join("trt_shim.cpp"))
        .arg("-o")
        .arg(&lib);
    for d in lib_candidates(include) {
        cmd.arg(format!("-L{}", d.display()));
        cmd.arg(format!("-Wl,-rpath,{}", d.display()));
    }
    cmd.args(["-lnvinfer", "-lnvonnxparser", "-lnvinfer_plugin", "-lcudart"]);
    let result = match cmd.output() {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("failed: could not run the C++ compiler: {e}");
            println!("cargo:warning={msg}");
            return msg;
        }
    };
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        println!(
            "cargo:warning=the real TensorRT shim failed to compile against {}; see real_shim_status.txt in {}",
            include.display(),
            out.display()
        );
        return format!(
            "failed: compiling {} against {}:\n{}",
            lib.display(),
            include.display(),
            tail.join("\n")
        );
    }
    // Next to the executables (target/<profile>/), where the loader looks.
    let mut placed = String::new();
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let dst = profile_dir.join("libfracture_trt_shim.so");
        if std::fs::copy(&lib, &dst).is_ok() {
            placed = format!(" (copied to {})", dst.display());
        }
    }
    println!("cargo:real_shim={}", lib.display());
    format!("built: {} against {}{placed}", lib.display(), include.display())
}
