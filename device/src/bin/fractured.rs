//! `fractured`: the device daemon (ingest → queue → decode → analyze → log). A thin shell over
//! [`fracture_device::worker`]: flags, configuration, logging, and the services around the
//! loop — signals, the HTTP server (review screen, `/healthz`, `/metrics`), systemd
//! notification.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fracture_device::StateDirArg;
use fracture_device::analyzer::Analyzer;
use fracture_device::bundle_select::load_analyzer;
use fracture_device::config::Config;
use fracture_device::http::HttpServer;
use fracture_device::signals;
use fracture_device::state_dir::StateDir;
use fracture_device::systemd::Notifier;
use fracture_device::worker::Worker;

/// Bone-fracture detection daemon: watches a capture folder, runs the detector, logs every
/// result to SQLite and serves the review screen. NOT FOR CLINICAL USE with phantom models.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    state: StateDirArg,
    /// TOML configuration file (every key optional; see --print-config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the HTTP server: the review screen, /healthz, /metrics (default
    /// 127.0.0.1:8470; loopback only unless the config sets [http] tls_cert and tls_key).
    #[arg(long)]
    listen: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Process what is in the capture folder now, then exit (prints a JSON summary).
    #[arg(long)]
    once: bool,
}

fn main() -> anyhow::Result<()> {
    // Before libtorch starts its threads: subnormal floats would slow inference many times.
    fracture_models::denormals::flush_denormals();
    // Freed tensors stay in the heap for the next step instead of being re-faulted page by page.
    fracture_models::heap::keep_freed_memory();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();

    let state_dir = &args.state.state_dir;
    let open = || {
        let dirs = StateDir::create(state_dir)
            .with_context(|| format!("creating state directory {}", state_dir.display()))?;
        // The installed bundle, or none: without a usable model every image is still
        // ingested and logged, as not analysed.
        let (analyzer, why_not) = load_analyzer(&dirs, &config.model);
        match (analyzer.model(), why_not) {
            (Some(m), _) => tracing::info!(
                bundle = %m.bundle_id, sha256 = %m.bundle_sha256, backend = %m.backend,
                precision = %m.precision, "model loaded"
            ),
            (None, Some(why)) => tracing::warn!("{why}: images are logged as not analysed"),
            (None, None) => tracing::warn!("no model: images are logged as not analysed"),
        }
        Worker::open(state_dir, config.clone(), analyzer)
            .with_context(|| format!("opening state directory {}", state_dir.display()))
    };
    if args.once {
        let stats = open()?.run_once()?;
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    // Daemon mode. From here on SIGTERM/SIGINT only set the stop flag: a stop that arrives
    // during start-up (database checks, model loading) ends the daemon cleanly right after.
    let stop = signals::stop_flag().context("installing signal handlers")?;
    let mut worker = open()?;
    // The HTTP socket before the loop, so a taken port or a refused address fails the
    // start-up at once.
    let telemetry = worker.telemetry().clone();
    let database = StateDir::at(state_dir).database;
    let http = HttpServer::start(&config, &database, telemetry.clone())?;
    tracing::info!(
        state_dir = %state_dir.display(),
        listen = %http.local_addr(),
        "fractured running"
    );
    let scanner = if config.scanner.enabled {
        let trigger = signals::trigger_flag().context("installing the SIGUSR1 handler")?;
        let capture = StateDir::at(state_dir).capture;
        Some(fracture_device::scanner::spawn(&config.scanner, capture, stop.clone(), trigger)?)
    } else {
        None
    };
    let notifier = Notifier::spawn(telemetry.clone(), stop.clone());
    let result = worker.run(&stop);
    // The scanner sees the stop flag between frames; a device that sends no more frames
    // must not hold up the exit, so its thread is joined only once it has ended.
    if let Some(s) = scanner
        && s.is_finished()
    {
        let _ = s.join();
    }
    if let Some(n) = notifier {
        n.finish();
    }
    http.shutdown();
    result?;
    let totals = telemetry.metrics.totals();
    tracing::info!(processed = totals.processed, quarantined = totals.quarantined, "stopped");
    Ok(())
}
