//! `fracturectl`: status, accounts, the auditor export, audit verification and the TensorRT
//! engine build for a `fractured` state directory.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use fracture_device::StateDirArg;
use fracture_device::accounts::{self, Role, SecretKind};
use fracture_device::db::Db;
use fracture_device::db::audit::verify_audit_chain;
use fracture_device::db::status::StatusReport;
use fracture_device::export::{self, DateRange, Format};
use fracture_device::state_dir::StateDir;
use fracture_tensorrt::Precision;

/// Control and audit tool for the fracture-detection appliance.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    state: StateDirArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Counts by state, model, backend and queue depth.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Review-screen accounts (reviewers, auditors, admins).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// TensorRT engines (built from the installed bundle for this GPU).
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
    /// Export what was logged between two dates (images, findings, review decisions and
    /// reasons, reviewers, model identity, timings). The export is itself an audit row, and
    /// the file carries the audit chain's head hash at that row.
    ///
    /// Example: fracturectl export --from 2026-11-01 --to 2026-11-30 --format csv --out nov.csv
    Export {
        /// First day included (YYYY-MM-DD, UTC).
        #[arg(long)]
        from: String,
        /// Last day included (YYYY-MM-DD, UTC).
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// File to write (refused if it exists, unless --force).
        #[arg(long)]
        out: PathBuf,
        /// Recorded as the export's actor in the audit row (default: $USER).
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum EngineCommand {
    /// Build (or refresh) the TensorRT engine of the installed bundle in STATE/engines/, as
    /// the daemon does at start, then load it and run one warm-up image. A cached engine
    /// that fits this bundle, GPU, TensorRT version and precision is kept unless --force.
    ///
    /// Example: fracturectl engine build --precision fp16
    Build {
        /// The daemon's configuration ([model] bundle, tensorrt_precision, tensorrt_shim).
        #[arg(long)]
        config: Option<PathBuf>,
        /// fp16 or int8 (default: the configuration's tensorrt_precision, else fp16).
        #[arg(long)]
        precision: Option<Precision>,
        /// The bundle folder under STATE/bundles/ (default: the configuration's, else the
        /// only one installed).
        #[arg(long)]
        bundle: Option<String>,
        /// The TensorRT shim library (default: the configuration's tensorrt_shim, else
        /// $FRACTURE_TRT_SHIM and the standard places).
        #[arg(long)]
        shim: Option<PathBuf>,
        /// Rebuild even when a fitting engine is cached.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Recompute the hash chain from the first row; exit 1 if any row was altered or removed.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create an account. The secret is read from standard input (one line), never from
    /// the command line: `echo 2468 | fracturectl user add alice --role reviewer`.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A password (at least 12 characters; may log in over the network with TLS)
        /// instead of the default PIN (4–12 digits; bedside/loopback logins only).
        #[arg(long)]
        password: bool,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable an account (its logins are refused; the daemon ends its sessions when they
    /// expire).
    Disable { name: String },
    /// Enable a disabled account again.
    Enable { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Reviewer,
    Auditor,
    Admin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Jsonl,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let state = StateDir::at(&args.state.state_dir);
    let actor = || std::env::var("USER").unwrap_or_else(|_| "fracturectl".into());
    match args.command {
        Command::Status { json } => {
            let db = Db::open_existing(&state.database)?;
            let report = StatusReport::read(&db)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        Command::Engine {
            command: EngineCommand::Build { config, precision, bundle, shim, force },
        } => {
            engine_build(&state, config, precision, bundle, shim, force)?;
        }
        Command::Audit { command: AuditCommand::Verify { json } } => {
            let db = Db::open_existing(&state.database)?;
            verify(&db, json);
        }
        Command::User { command } => {
            let mut db = Db::open_existing(&state.database)?;
            user(&mut db, command, &format!("fracturectl:{}", actor()))?;
        }
        Command::Export { from, to, format, out, actor: who, force } => {
            let range = DateRange::parse(&from, &to)?;
            let format = match format {
                ExportFormat::Csv => Format::Csv,
                ExportFormat::Jsonl => Format::Jsonl,
            };
            if out.exists() && !force {
                bail!("{} exists; choose another --out or pass --force", out.display());
            }
            let mut db = Db::open_existing(&state.database)?;
            let who = who.unwrap_or_else(actor);
            let s = export::export_file(&mut db, &range, format, &who, &out)?;
            eprintln!(
                "exported {} image(s), {} row(s) to {}; audit row {} head {}",
                s.images,
                s.rows,
                out.display(),
                s.audit_seq,
                s.audit_head
            );
        }
    }
    Ok(())
}

fn verify(db: &Db, json: bool) {
    match verify_audit_chain(db.conn()) {
        Ok(head) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": true, "rows": head.rows, "head": head.head })
                );
            } else {
                println!("audit chain intact: {} rows, head {}", head.rows, head.head);
            }
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "error": e.to_string() }));
            } else {
                eprintln!("AUDIT CHAIN BROKEN: {e}");
            }
            std::process::exit(1);
        }
    }
}

fn user(db: &mut Db, command: UserCommand, actor: &str) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, role, password } => {
            let role = match role {
                RoleArg::Reviewer => Role::Reviewer,
                RoleArg::Auditor => Role::Auditor,
                RoleArg::Admin => Role::Admin,
            };
            let kind = if password { SecretKind::Password } else { SecretKind::Pin };
            let what = if password { "password" } else { "PIN" };
            eprintln!("{what} for {name} (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the secret")?;
            let secret = line.trim_end_matches(['\r', '\n']);
            let a = accounts::add(db, &name, role, kind, secret, actor)?;
            eprintln!("account {} created ({}, {})", a.name, a.role, a.secret_kind.as_str());
        }
        UserCommand::List { json } => {
            let list = accounts::list(db)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for a in list {
                    let off = if a.disabled { "  (disabled)" } else { "" };
                    println!(
                        "{:<24} {:<9} {:<9} since {}{off}",
                        a.name,
                        a.role.as_str(),
                        a.secret_kind.as_str(),
                        a.created_at
                    );
                }
            }
        }
        UserCommand::Disable { name } => accounts::set_disabled(db, &name, true, actor)?,
        UserCommand::Enable { name } => accounts::set_disabled(db, &name, false, actor)?,
    }
    Ok(())
}

/// `fracturectl engine build`: the daemon's engine preparation, on demand.
fn engine_build(
    state: &StateDir,
    config: Option<PathBuf>,
    precision: Option<Precision>,
    bundle: Option<String>,
    shim: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    use fracture_device::backend_tensorrt::{TrtAnalyzer, prepare_engine};
    use fracture_device::bundle_select::select;
    let model = match &config {
        Some(path) => fracture_device::config::Config::load(path)?.model,
        None => fracture_device::bundle_select::ModelConfig::default(),
    };
    let precision = precision.unwrap_or(model.tensorrt_precision);
    let shim = shim.or(model.tensorrt_shim);
    let name = bundle.or(model.bundle);
    let Some(bundle) = select(&state.bundles, name.as_deref())? else {
        bail!("no model bundle installed under {}", state.bundles.display());
    };
    let (_shim, cached) =
        prepare_engine(&bundle, shim.as_deref(), precision, &state.engines, force)?;
    println!("{}: {}", cached.provenance, cached.path.display());
    drop(cached);
    // What the daemon does next: load it checked and run one image.
    let analyzer = TrtAnalyzer::load(&bundle, shim.as_deref(), precision, &state.engines)
        .context("loading the engine just prepared")?;
    drop(analyzer);
    println!(
        "bundle {} ({}), {precision}: warm-up inference passed",
        bundle.manifest.bundle_id, bundle.sha256
    );
    Ok(())
}
