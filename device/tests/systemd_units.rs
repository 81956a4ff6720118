//! The files in `systemd/`: the example configuration parses with the daemon's own loader
//! (and documents the defaults); `systemd-analyze verify` accepts the unit and
//! `systemd-analyze security --offline=yes` scores it at 2.0 or lower (the CI gate); the
//! sysusers.d and tmpfiles.d entries lay out a root as intended. Tests needing
//! `systemd-analyze` skip, saying so, only where it is not installed (`scripts/setup`
//! installs it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use fracture_device::config::Config;

const FRACTURED: &str = env!("CARGO_BIN_EXE_fractured");
/// The exposure score the unit must not exceed.
const MAX_EXPOSURE: f64 = 2.0;

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The unit with ExecStart pointing at the binary just built (verify checks it exists).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(systemd_dir().join("fractured.service")).expect("unit");
    assert!(text.contains("ExecStart=/usr/bin/fractured "), "ExecStart changed?");
    let path = dir.join("fractured.service");
    std::fs::write(
        &path,
        text.replace("ExecStart=/usr/bin/fractured ", &format!("ExecStart={FRACTURED} ")),
    )
    .expect("write unit");
    path
}

#[test]
fn the_example_config_parses_and_shows_the_defaults() {
    let path = systemd_dir().join("fractured.example.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config, Config::default(), "the example documents the defaults; keep them in step");
    // And the daemon itself accepts it.
    let out = Command::new(FRACTURED)
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn systemd_analyze_verify_passes() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (scripts/setup installs `systemd`)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(tmp.path());
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    assert!(
        !stderr.lines().any(|l| l.contains("fractured.service")),
        "warnings about the unit:\n{stderr}"
    );
}

#[test]
fn systemd_analyze_security_scores_at_most_two() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (scripts/setup installs `systemd`)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(tmp.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| {
        panic!("no score in:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    eprintln!("{}", line.trim());
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}:\n{stdout}");
}

#[test]
fn sysusers_and_tmpfiles_lay_out_the_state_directory() {
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !have("systemd-sysusers") || !have("systemd-tmpfiles") || !is_root {
        eprintln!("SKIPPED: needs systemd-sysusers, systemd-tmpfiles and root (to chown)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    std::fs::create_dir(root.join("etc")).expect("etc");
    let run = |tool: &str, file: &str, extra: &[&str]| {
        let out = Command::new(tool)
            .arg(format!("--root={}", root.display()))
            .args(extra)
            .arg(systemd_dir().join(file))
            .output()
            .expect(tool);
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("systemd-sysusers", "fractured.sysusers.conf", &[]);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let user = passwd.lines().find(|l| l.starts_with("fractured:")).expect("user fractured");
    let fields: Vec<&str> = user.split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid > 0 && uid < 1000, "a system user: {user}");
    assert_eq!(fields[5], "/var/lib/fractured");
    assert!(fields[6].ends_with("nologin"), "{user}");
    let group = std::fs::read_to_string(root.join("etc/group")).expect("group");
    for g in ["video", "render"] {
        let line = group.lines().find(|l| l.starts_with(&format!("{g}:"))).expect(g);
        assert!(line.ends_with("fractured"), "{line}");
    }

    run("systemd-tmpfiles", "fractured.tmpfiles.conf", &["--create"]);
    for (path, mode, owner) in [
        ("var/lib/fractured", 0o750, uid),
        ("var/lib/fractured/capture", 0o2770, uid),
        ("var/lib/fractured/archive", 0o750, uid),
        ("var/lib/fractured/quarantine", 0o750, uid),
        ("var/lib/fractured/bundles", 0o750, uid),
        ("var/lib/fractured/engines", 0o750, uid),
        ("var/log/fractured", 0o750, uid),
        ("etc/fractured/fractured.toml", 0o640, 0),
    ] {
        let meta = std::fs::metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
        assert_eq!(meta.uid(), owner, "{path}");
    }
    // The empty configuration file is a valid one.
    let empty = Config::load(&root.join("etc/fractured/fractured.toml")).expect("empty config");
    assert_eq!(empty, Config::default());
}
