//! `fracturectl`: status and audit tooling for a `fractured` state directory.

use clap::{Parser, Subcommand};
use fracture_device::StateDirArg;
use fracture_device::db::Db;
use fracture_device::db::audit::verify_audit_chain;
use fracture_device::db::status::StatusReport;
use fracture_device::state_dir::StateDir;

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
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Recompute the hash chain from the first row; exit 1 if any row was altered or removed.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let state = StateDir::at(&args.state.state_dir);
    let db = Db::open_existing(&state.database)?;
    match args.command {
        Command::Status { json } => {
            let report = StatusReport::read(&db)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        Command::Audit { command: AuditCommand::Verify { json } } => {
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
    }
    Ok(())
}
