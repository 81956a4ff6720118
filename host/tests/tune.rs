//! `fracture tune` through the real binary on phantoms (tiny yolo11n at 160 px, rungs of 1 and
//! 3 epochs): a SQLite study of 6 trials finishes and ranks by the validation metric; a study
//! killed mid-way resumes and completes without running a rung twice; three workers sharing a
//! private PostgreSQL server (started by the test) split the jobs without taking one twice.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fracture_host::train::config::TrainConfig;
use fracture_host::tune::asha::JobState;
use fracture_host::tune::store::{self, JobRecord, Store};
use support::{fracture, fracture_stdout};

/// 48 phantoms (half fractured) and a split of them.
fn phantoms(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("data");
    let split = root.join("split.json");
    fracture(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--count",
        "48",
        "--size-min",
        "160",
        "--size-max",
        "192",
        "--fractured-fraction",
        "0.5",
        "--seed",
        "3",
    ]);
    fracture(&["split", "--data", data.to_str().unwrap(), "--out", split.to_str().unwrap()]);
    (data, split)
}

const SPACE: &str = r#"
[lr0]
low = 1e-4
high = 1e-2
log = true

[weight_decay]
low = 0.0
high = 0.001

["augment.fliplr"]
low = 0.0
high = 0.5

[dropout]
choices = [0.0, 0.1]
"#;

/// `fracture tune` arguments for a 6-trial study with rungs at 1 and 3 epochs.
fn tune_args(root: &Path, data: &Path, split: &Path, out: &Path, space: &str) -> Vec<String> {
    let space_text = space;
    let space = root.join("space.toml");
    std::fs::write(&space, space_text).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    [
        "tune",
        "--data",
        &s(data),
        "--split",
        &s(split),
        "--arch",
        "yolo11n",
        "--space",
        &s(&space),
        "--out",
        &s(out),
        "--trials",
        "6",
        "--min-epochs",
        "1",
        "--max-epochs",
        "3",
        "--eta",
        "3",
        "--imgsz",
        "160",
        "--batch",
        "8",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Epoch numbers in a run's metrics.csv.
fn csv_epochs(run: &Path) -> Vec<usize> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// What every finished study must look like: 6 trials; one job per (trial, rung), all done;
/// rung 0 for all, rung 1 for the top third of rung 0 (at least); each run folder trained
/// epochs 1..=its highest rung's exactly once.
fn check_complete_study(store: &mut dyn Store, out: &Path) -> Vec<JobRecord> {
    let trials = store.trials("default").unwrap();
    assert_eq!(trials.len(), 6, "{trials:?}");
    let jobs = store.jobs("default").unwrap();
    let keys: BTreeSet<(usize, usize)> = jobs.iter().map(|j| (j.row.trial, j.row.rung)).collect();
    assert_eq!(keys.len(), jobs.len(), "a (trial, rung) twice: {jobs:?}");
    assert!(jobs.iter().all(|j| j.row.state == JobState::Done), "{jobs:?}");
    assert_eq!(jobs.iter().filter(|j| j.row.rung == 0).count(), 6);
    let promoted: Vec<usize> =
        jobs.iter().filter(|j| j.row.rung == 1).map(|j| j.row.trial).collect();
    assert!((2..=3).contains(&promoted.len()), "{jobs:?}");
    for t in &trials {
        let top = jobs.iter().filter(|j| j.row.trial == t.id).map(|j| j.epochs).max().unwrap();
        let run = out.join(format!("trial-{:04}", t.id));
        assert_eq!(csv_epochs(&run), (1..=top).collect::<Vec<_>>(), "trial {}", t.id);
        let expected = if promoted.contains(&t.id) { "complete" } else { "waiting" };
        assert_eq!(t.state, expected, "trial {}", t.id);
    }
    // Per-epoch metrics are in the store too.
    let epochs = store.epochs("default").unwrap();
    let total: usize = trials.iter().map(|t| if promoted.contains(&t.id) { 3 } else { 1 }).sum();
    assert_eq!(epochs.len(), total);
    jobs
}

#[test]
fn sqlite_study_finishes_and_ranks_by_the_validation_metric() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantoms(tmp.path());
    let out = tmp.path().join("study");
    // Validation loss: on phantoms this small mAP is still 0 after 3 epochs, the loss is not.
    let mut args = tune_args(tmp.path(), &data, &split, &out, SPACE);
    args.extend(["--metric", "val_loss"].map(String::from));
    let started = Instant::now();
    let text = fracture_stdout(&refs(&args));
    eprintln!("sqlite study: {:.0} s", started.elapsed().as_secs_f64());

    let mut store =
        store::open(&format!("sqlite:{}", out.join("study.sqlite3").display())).unwrap();
    let jobs = check_complete_study(store.as_mut(), &out);
    // The table's order, from the store's numbers: highest rung first, then lower loss.
    let mut expected: Vec<(usize, usize, f64)> = (0..6)
        .map(|t| {
            let j = jobs.iter().filter(|j| j.row.trial == t).max_by_key(|j| j.row.rung).unwrap();
            (t, j.row.rung, j.row.metric.unwrap())
        })
        .collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
    let header = text.lines().position(|l| l.trim_start().starts_with("rank")).unwrap();
    let rows: Vec<Vec<&str>> =
        text.lines().skip(header + 1).take(6).map(|l| l.split_whitespace().collect()).collect();
    assert!(text.lines().nth(header).unwrap().contains("val_loss"), "{text}");
    for (i, (row, (trial, rung, metric))) in rows.iter().zip(&expected).enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "{text}");
        assert_eq!(row[1], trial.to_string(), "rank {}: {text}", i + 1);
        assert_eq!(row[3], rung.to_string(), "{text}");
        let shown: f64 = row[5].parse().unwrap();
        assert!((shown - metric).abs() < 1e-4, "{shown} vs {metric}");
    }
    // The losses differ between trials: the ranking is not a tie-break.
    assert!(expected.windows(2).any(|w| w[0].2 != w[1].2));

    // best.toml: the winner's full configuration, accepted by `fracture train --hyp`.
    let best = out.join("best.toml");
    let cfg = TrainConfig::from_toml_file(&best).unwrap();
    let winner = &store.trials("default").unwrap()[expected[0].0];
    assert_eq!(cfg.lr0, winner.params["lr0"].as_f64().unwrap());
    assert_eq!(cfg.augment.fliplr, winner.params["augment.fliplr"].as_f64().unwrap());
    assert_eq!((cfg.epochs, cfg.imgsz, cfg.batch), (3, 160, 8));
    assert!(out.join("trials.csv").is_file());
    let run = tmp.path().join("best-run");
    let text = fracture(&[
        "train",
        "--arch",
        "yolo11n",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--hyp",
        best.to_str().unwrap(),
        "--epochs",
        "1",
        "--threads",
        "1",
    ]);
    assert!(text.contains("done: 1 epochs"), "{text}");

    // --report reads the same ranking back from the store.
    let report = fracture_stdout(&["tune", "--report", "--out", out.to_str().unwrap()]);
    let first = report.lines().skip_while(|l| !l.trim_start().starts_with("rank")).nth(1).unwrap();
    assert_eq!(first.split_whitespace().nth(1).unwrap(), expected[0].0.to_string());
}

#[test]
fn killed_study_resumes_without_repeating_a_rung() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantoms(tmp.path());
    let out = tmp.path().join("study");
    let mut args = tune_args(tmp.path(), &data, &split, &out, SPACE);
    // A short lease, so the killed worker's job is taken over soon.
    args.extend(["--lease", "6"].map(String::from));
    let mut child = Command::new(env!("CARGO_BIN_EXE_fracture"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = out.join("study.sqlite3");
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(240), "no job finished in 4 minutes");
        assert!(child.try_wait().unwrap().is_none(), "tune ended before it could be killed");
        if db.exists()
            && let Ok(mut s) = store::open(&format!("sqlite:{}", db.display()))
            && s.jobs("default").is_ok_and(|j| j.iter().any(|j| j.row.state == JobState::Done))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let mut store = store::open(&format!("sqlite:{}", db.display())).unwrap();
    let before = store.jobs("default").unwrap();
    let done_before = before.iter().filter(|j| j.row.state == JobState::Done).count();
    assert!(done_before < 8, "the kill came too late to test resuming");

    let text = fracture_stdout(&refs(&args));
    assert!(text.contains("study \"default\": 6 of 6 trials"), "{text}");
    let jobs = check_complete_study(store.as_mut(), &out);
    // Jobs done before the kill kept their results; a job cut off was taken over, not redone.
    for b in before.iter().filter(|j| j.row.state == JobState::Done) {
        let after =
            jobs.iter().find(|j| (j.row.trial, j.row.rung) == (b.row.trial, b.row.rung)).unwrap();
        assert_eq!(after.row.metric, b.row.metric);
        assert_eq!(after.row.attempts, 1);
    }
    let claims = store.claims("default").unwrap();
    let mut per_job: BTreeMap<(usize, usize), Vec<&str>> = BTreeMap::new();
    for c in &claims {
        per_job.entry((c.trial, c.rung)).or_default().push(c.kind.as_str());
    }
    for (job, kinds) in &per_job {
        assert!(
            kinds.len() == 1 || kinds[1..].iter().all(|k| *k == "reclaim"),
            "{job:?}: {kinds:?}"
        );
    }
    let reclaimed = before.iter().filter(|j| j.row.state == JobState::Running).count();
    assert_eq!(claims.iter().filter(|c| c.kind == "reclaim").count(), reclaimed, "{claims:?}");
}

/// A private PostgreSQL server in a temporary folder (Debian's binaries), stopped on drop.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed (scripts/setup installs Debian's postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let dir = tempfile::tempdir().unwrap();
        // initdb and postgres refuse to run as root: run them as the `postgres` user then.
        let uid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres {
            let id = |flag: &str| -> u32 {
                let o = Command::new("id").args([flag, "postgres"]).output().unwrap();
                String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
            };
            std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g"))).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Self { bin, dir, port, as_postgres };
        let data = pg.dir.path().join("data");
        pg.run(&[
            "initdb",
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("server.log");
        pg.run(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "-t",
            "60",
            "start",
        ]);
        pg
    }

    fn run(&self, args: &[&str]) {
        let program = self.bin.join(args[0]);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(&args[1..]).current_dir(self.dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let _ = cmd.arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

#[test]
fn postgres_workers_share_a_study_without_taking_a_job_twice() {
    let pg = Postgres::start();
    let mut admin = postgres::Client::connect(&pg.url("postgres"), postgres::NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE tune").unwrap();
    let url = pg.url("tune");

    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantoms(tmp.path());
    let out = tmp.path().join("study");
    // Loss gains in the space too (ranked by fitness).
    let space = format!("{SPACE}\n[box_gain]\nlow = 5.0\nhigh = 9.0\n");
    let mut args = tune_args(tmp.path(), &data, &split, &out, &space);
    args.extend(["--worker", "--store", &url].map(String::from));
    let started = Instant::now();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_fracture"))
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "worker failed:\n{err}");
        assert!(err.contains("nothing left to claim"), "{err}");
    }
    eprintln!("3 postgres workers: {:.0} s", started.elapsed().as_secs_f64());

    let mut store = store::open(&url).unwrap();
    let jobs = check_complete_study(store.as_mut(), &out);
    let claims = store.claims("default").unwrap();
    // Every job was claimed exactly once, by the worker that finished it.
    assert_eq!(claims.len(), jobs.len(), "{claims:?}");
    for j in &jobs {
        let c: Vec<_> =
            claims.iter().filter(|c| (c.trial, c.rung) == (j.row.trial, j.row.rung)).collect();
        assert_eq!(c.len(), 1, "{:?} claimed {} times", (j.row.trial, j.row.rung), c.len());
        assert_eq!(c[0].worker, j.row.worker);
        assert_ne!(c[0].kind, "reclaim");
    }
    let workers: BTreeSet<&str> = claims.iter().map(|c| c.worker.as_str()).collect();
    assert!(workers.len() >= 2, "only {workers:?} took part");

    // The report comes from the shared store.
    let report =
        fracture_stdout(&["tune", "--report", "--store", &url, "--out", out.to_str().unwrap()]);
    assert!(report.contains("6 of 6 trials"), "{report}");
    TrainConfig::from_toml_file(&out.join("best.toml")).unwrap();
}

#[test]
fn kfold_study_averages_the_folds() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, split) = phantoms(tmp.path());
    let out = tmp.path().join("study");
    let mut args = tune_args(tmp.path(), &data, &split, &out, SPACE);
    for (flag, value) in [("--trials", "3"), ("--max-epochs", "1")] {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = value.into();
    }
    args.extend(["--folds", "2", "--metric", "val_loss"].map(String::from));
    fracture_stdout(&refs(&args));

    // Two folds: disjoint validation sets covering the split's train + val images, and its
    // test images held out of both.
    let part = |k: usize| -> serde_json::Value {
        let p = out.join(format!("splits/partition-{k}.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let ids = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
    };
    let (p0, p1) = (part(0), part(1));
    assert!(ids(&p0["val"]).is_disjoint(&ids(&p1["val"])));
    let given: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&split).unwrap()).unwrap();
    let pool: BTreeSet<String> = ids(&given["train"]).union(&ids(&given["val"])).cloned().collect();
    assert_eq!(ids(&p0["val"]).union(&ids(&p1["val"])).cloned().collect::<BTreeSet<_>>(), pool);
    assert_eq!(ids(&p0["test"]), ids(&given["test"]));

    let mut store =
        store::open(&format!("sqlite:{}", out.join("study.sqlite3").display())).unwrap();
    let jobs = store.jobs("default").unwrap();
    let epochs = store.epochs("default").unwrap();
    assert_eq!(jobs.len(), 3);
    for j in &jobs {
        let folds: Vec<f64> =
            epochs.iter().filter(|e| e.trial == j.row.trial).map(|e| e.val_loss).collect();
        assert_eq!(folds.len(), 2, "{epochs:?}");
        let mean = (folds[0] + folds[1]) / 2.0;
        assert!((j.row.metric.unwrap() - mean).abs() < 1e-9, "{j:?} vs {folds:?}");
        for k in 0..2 {
            let run = out.join(format!("trial-{:04}/fold-{k}", j.row.trial));
            assert_eq!(csv_epochs(&run), vec![1]);
        }
    }
}
