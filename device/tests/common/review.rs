//! A daemon that has analysed phantoms with the demo model, accounts made with the real
//! `fracturectl`, and logins over the real HTTP API: the fixture of the review-screen tests.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fracture_device::db::Db;
use fracture_host::synth::{self, SynthConfig};
use fracture_models::bundle::Bundle;

use super::daemon::{self, Daemon, Response};

pub const FRACTURECTL: &str = env!("CARGO_BIN_EXE_fracturectl");

/// The repository's demo bundle (yolo11n trained on phantoms) installed under `bundles/`
/// with its "suspicious" operating point lowered to `suspicious`, so phantoms give findings
/// at both operating points.
pub fn install_demo_bundle(bundles: &Path, suspicious: f32) -> Bundle {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/bundle");
    let source = Bundle::open(&demo).expect("demo bundle (demo/bundle in the repository)");
    let mut manifest = source.manifest.clone();
    manifest.operating_points.suspicious = suspicious;
    manifest.bundle_id = "demo-review-test".into();
    Bundle::write(&bundles.join("demo"), &demo.join("weights.safetensors"), manifest)
        .expect("install bundle")
}

/// `count` phantoms (16-bit PNG, 224–256 px, mostly fractured) written into `capture`,
/// plus one uniform grey image (`blank.png`) the model finds nothing on.
pub fn write_phantoms(capture: &Path, count: usize, seed: u64) -> Vec<PathBuf> {
    let config = SynthConfig {
        count,
        seed,
        fractured_fraction: 0.8,
        png16: true,
        size_min: 224,
        size_max: 256,
        ..SynthConfig::default()
    };
    let mut paths = Vec::new();
    for i in 0..count {
        let p = synth::generate(&config, i);
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(p.width, p.height, p.pixels)
            .expect("phantom buffer");
        let path = capture.join(config.image_id(i));
        img.save(&path).expect("write phantom");
        paths.push(path);
    }
    let blank = capture.join("blank.png");
    image::GrayImage::from_pixel(240, 240, image::Luma([90])).save(&blank).expect("blank");
    paths.push(blank);
    paths
}

/// Waits until `n` jobs have ended (done, failed or quarantined).
pub fn wait_processed(db_path: &Path, n: i64, timeout: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(db) = Db::open_existing(db_path) {
            let done: i64 = db
                .conn()
                .query_row(
                    "SELECT count(*) FROM jobs WHERE state IN ('done', 'failed', 'quarantined')",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if done >= n {
                return;
            }
        }
        assert!(start.elapsed() < timeout, "{n} images not processed within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `fracturectl user add NAME --role ROLE [--password]` with the secret on stdin.
pub fn add_user(state: &Path, name: &str, role: &str, secret: &str, password: bool) {
    let mut cmd = Command::new(FRACTURECTL);
    cmd.arg("--state-dir").arg(state).args(["user", "add", name, "--role", role]);
    if password {
        cmd.arg("--password");
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn fracturectl");
    writeln!(child.stdin.take().expect("stdin"), "{secret}").expect("secret");
    let out = child.wait_with_output().expect("fracturectl");
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
}

/// A logged-in API client: the session cookie and the CSRF token.
pub struct Client {
    pub addr: SocketAddr,
    pub cookie: String,
    pub csrf: String,
}

impl Client {
    pub fn login(addr: SocketAddr, user: &str, secret: &str) -> Self {
        let body = serde_json::json!({ "user": user, "secret": secret }).to_string();
        let r = daemon::request(
            addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "login {user}: {}", r.body);
        let cookie = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("session cookie")
            .to_string();
        let json: serde_json::Value = serde_json::from_str(&r.body).expect("login json");
        let csrf = json["csrf"].as_str().expect("csrf").to_string();
        Self { addr, cookie, csrf }
    }

    pub fn get(&self, path: &str) -> Response {
        daemon::request(self.addr, "GET", path, &[("Cookie", &self.cookie)], b"")
    }

    /// A POST with the session and its CSRF token.
    pub fn post(&self, path: &str, json: &serde_json::Value) -> Response {
        let body = json.to_string();
        daemon::request(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }
}

/// A daemon with the demo bundle that has analysed `count` phantoms and the blank image.
pub fn analysed_daemon(root: &Path, count: usize) -> Daemon {
    install_demo_bundle(&root.join("bundles"), 0.05);
    std::fs::create_dir_all(root.join("capture")).expect("capture");
    write_phantoms(&root.join("capture"), count, 5);
    let config = daemon::config_file(root.parent().expect("parent"), "review.toml", daemon::FAST);
    let d = Daemon::spawn(root, Some(&config), &[], &[]);
    wait_processed(&root.join("fractured.sqlite3"), count as i64 + 1, Duration::from_secs(120));
    d
}
