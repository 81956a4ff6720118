//! The review screen in a real browser: headless Chromium (Debian's package, installed by
//! `scripts/setup`) drives the page served by a real `fractured` that analysed phantoms with
//! the demo model. A reviewer logs in, sees the worklist, opens an image and finds its boxes
//! drawn where the database says they are, accepts one finding, rejects another with a
//! reason, draws a missed fracture on a second image and confirms a blank image negative;
//! then the database and the audit chain hold exactly those decisions. A screenshot is kept
//! in `target/test-artifacts/review-screen.png`.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::review::{add_user, analysed_daemon};
use fracture_device::db::Db;
use headless_chrome::protocol::cdp::Input;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Evaluates the expression `js` in the page and returns its value (through JSON).
fn eval(tab: &Tab, js: &str) -> serde_json::Value {
    let wrapped = format!("JSON.stringify(({js}))");
    let r = tab.evaluate(&wrapped, false).unwrap_or_else(|e| panic!("evaluate {js}: {e}"));
    match r.value {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).expect("JSON"),
        _ => serde_json::Value::Null,
    }
}

/// Polls `js` until it returns true.
fn wait_js(tab: &Tab, js: &str, what: &str) {
    let start = Instant::now();
    while eval(tab, js) != serde_json::Value::Bool(true) {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the database until `sql` (a count) reaches `n`.
fn wait_db(db_path: &Path, sql: &str, n: i64) {
    let start = Instant::now();
    loop {
        let db = Db::open_existing(db_path).expect("db");
        let got: i64 = db.conn().query_row(sql, [], |r| r.get(0)).expect("count");
        if got == n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{sql} stayed {got}, expected {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn click(tab: &Tab, selector: &str) {
    tab.wait_for_element(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

fn type_into(tab: &Tab, selector: &str, text: &str) {
    click(tab, selector);
    tab.type_str(text).unwrap_or_else(|e| panic!("type into {selector}: {e}"));
}

fn mouse(tab: &Tab, kind: Input::DispatchMouseEventTypeOption, x: f64, y: f64, down: bool) {
    tab.call_method(Input::DispatchMouseEvent {
        Type: kind,
        x,
        y,
        modifiers: None,
        timestamp: None,
        button: Some(Input::MouseButton::Left),
        buttons: Some(if down { 1 } else { 0 }),
        click_count: Some(1),
        force: None,
        tangential_pressure: None,
        tilt_x: None,
        tilt_y: None,
        twist: None,
        delta_x: None,
        delta_y: None,
        pointer_Type: None,
    })
    .expect("mouse event");
}

/// The fitted view the page opens an image in: scale and offset from image pixels to CSS
/// pixels of the canvas, and the canvas's place on the page.
#[derive(Debug, Clone, Copy)]
struct View {
    s: f64,
    tx: f64,
    ty: f64,
    left: f64,
    top: f64,
}

fn fitted_view(tab: &Tab, w: f64, h: f64) -> View {
    let v = eval(
        tab,
        "(() => { const c = document.getElementById('viewer-canvas'); \
         const r = c.getBoundingClientRect(); \
         return [c.clientWidth, c.clientHeight, r.left + c.clientLeft, r.top + c.clientTop]; })()",
    );
    let n = |i: usize| v[i].as_f64().expect("number");
    let (cw, ch) = (n(0), n(1));
    let s = (cw / w).min(ch / h);
    View { s, tx: (cw - w * s) / 2.0, ty: (ch - h * s) / 2.0, left: n(2), top: n(3) }
}

/// For each box (image pixels), the share of points sampled along its four edges where the
/// canvas shows a strongly coloured pixel (the radiograph itself is grey).
fn coloured_edge_share(tab: &Tab, view: View, boxes: &[[f64; 4]]) -> Vec<f64> {
    let js = format!(
        "(() => {{ const c = document.getElementById('viewer-canvas'); \
         const ctx = c.getContext('2d'); const dpr = window.devicePixelRatio || 1; \
         const v = {{s: {s}, tx: {tx}, ty: {ty}}}; const boxes = {boxes}; \
         return boxes.map(b => {{ let hit = 0, n = 0; \
           for (let t = 0.1; t <= 0.9; t += 0.02) {{ \
             const pts = [[b[0] + (b[2] - b[0]) * t, b[1]], [b[0] + (b[2] - b[0]) * t, b[3]], \
                          [b[0], b[1] + (b[3] - b[1]) * t], [b[2], b[1] + (b[3] - b[1]) * t]]; \
             for (const [x, y] of pts) {{ \
               const px = Math.round((x * v.s + v.tx) * dpr), py = Math.round((y * v.s + v.ty) * dpr); \
               const d = ctx.getImageData(px - 1, py - 1, 3, 3).data; let col = false; \
               for (let i = 0; i < d.length; i += 4) {{ \
                 const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]); \
                 if (mx - mn > 80) col = true; }} \
               if (col) hit++; n++; }} }} \
           return hit / n; }}); }})()",
        s = view.s,
        tx = view.tx,
        ty = view.ty,
        boxes = serde_json::to_string(boxes).expect("boxes"),
    );
    eval(tab, &js).as_array().expect("shares").iter().map(|v| v.as_f64().unwrap_or(0.0)).collect()
}

/// Opens image `id` from the worklist and waits until its pixels are drawn and its
/// findings listed.
fn open_image(tab: &Tab, id: i64, findings: usize) {
    click(tab, &format!(".wl-item[data-image-id=\"{id}\"]"));
    wait_js(
        tab,
        &format!(
            "document.querySelectorAll('.finding').length === {findings} && \
             location.hash === '#image={id}' && \
             document.getElementById('view-info').textContent.includes('%')"
        ),
        &format!("image {id} to open"),
    );
    std::thread::sleep(Duration::from_millis(400));
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

struct ImageRow {
    id: i64,
    name: String,
    width: f64,
    height: f64,
    findings: Vec<(i64, [f64; 4])>,
}

fn images(db: &Db) -> Vec<ImageRow> {
    let mut stmt = db
        .conn()
        .prepare("SELECT id, original_name, width, height FROM images ORDER BY id DESC")
        .expect("q");
    let rows: Vec<(i64, String, f64, f64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows.into_iter()
        .map(|(id, name, width, height)| {
            let mut f = db
                .conn()
                .prepare(
                    "SELECT f.id, f.x1, f.y1, f.x2, f.y2 FROM findings f
                     JOIN runs r ON r.id = f.run_id WHERE r.image_id = ?1 ORDER BY f.id",
                )
                .expect("q");
            let findings = f
                .query_map([id], |r| Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])))
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("rows");
            ImageRow { id, name, width, height, findings }
        })
        .collect()
}

#[test]
fn a_reviewer_decides_in_a_real_browser_and_the_log_holds_exactly_that() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/setup installs Debian's chromium package"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("state");
    let daemon = analysed_daemon(&root, 6);
    let addr = daemon.http_addr();
    add_user(&root, "alice", "reviewer", "2468", false);
    let db_path = root.join("fractured.sqlite3");
    let db = Db::open_existing(&db_path).expect("db");
    let all = images(&db);
    assert_eq!(all.len(), 7);
    let a = all.iter().max_by_key(|i| i.findings.len()).expect("images");
    assert!(a.findings.len() >= 2, "a phantom with two findings at suspicious 0.05");
    let blank = all.iter().find(|i| i.name == "blank.png").expect("blank image");
    assert!(blank.findings.is_empty(), "the model finds nothing on a uniform image");
    let b = all.iter().find(|i| i.id != a.id && i.id != blank.id).expect("another image");

    let user_data = tmp.path().join("chromium");
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1400, 900)))
        .user_data_dir(Some(user_data))
        .idle_browser_timeout(Duration::from_secs(180))
        .args(vec![OsStr::new("--disable-gpu"), OsStr::new("--disable-background-networking")])
        .build()
        .expect("launch options");
    let browser = Browser::new(options).expect("start chromium");
    let tab = browser.new_tab().expect("tab");
    tab.navigate_to(&format!("http://{addr}/")).expect("navigate");
    tab.wait_until_navigated().expect("loaded");

    // Log in; the worklist shows every image, newest first.
    type_into(&tab, "#login-user", "alice");
    type_into(&tab, "#login-secret", "2468");
    click(&tab, "#login-submit");
    wait_js(&tab, "document.querySelectorAll('.wl-item').length === 7", "the worklist");
    let listed =
        eval(&tab, "[...document.querySelectorAll('.wl-item')].map(e => +e.dataset.imageId)");
    let listed: Vec<i64> = serde_json::from_value(listed).expect("ids");
    assert_eq!(listed, all.iter().map(|i| i.id).collect::<Vec<_>>());
    assert!(
        eval(&tab, "document.getElementById('whoami').textContent").to_string().contains("alice")
    );

    // Open the image with the most findings: every finding listed, every box drawn where
    // the database has it, the unverified label and the model identity shown.
    open_image(&tab, a.id, a.findings.len());
    let ids =
        eval(&tab, "[...document.querySelectorAll('.finding')].map(e => +e.dataset.findingId)");
    let ids: BTreeSet<i64> = serde_json::from_value(ids).expect("ids");
    assert_eq!(ids, a.findings.iter().map(|f| f.0).collect());
    assert_eq!(eval(&tab, "!document.getElementById('unverified-label').hidden"), true);
    let model = eval(&tab, "document.getElementById('model-info').textContent").to_string();
    assert!(model.contains("demo-review-test"), "{model}");
    let view = fitted_view(&tab, a.width, a.height);
    let boxes: Vec<[f64; 4]> = a.findings.iter().map(|f| f.1).collect();
    let shown = coloured_edge_share(&tab, view, &boxes);
    assert!(shown.iter().all(|s| *s > 0.25), "box edges coloured on the canvas: {shown:?}");
    click(&tab, "#overlay-toggle");
    std::thread::sleep(Duration::from_millis(400));
    let hidden = coloured_edge_share(&tab, view, &boxes);
    assert!(hidden.iter().all(|s| *s == 0.0), "overlay off leaves the image alone: {hidden:?}");
    click(&tab, "#overlay-toggle");

    // Radiology-viewer keys: i inverts, space resets the view, 2 picks the bone window.
    let info = || eval(&tab, "document.getElementById('view-info').textContent").to_string();
    let pressed =
        || eval(&tab, "document.getElementById('invert-btn').getAttribute('aria-pressed')");
    click(&tab, "#viewer-canvas");
    tab.press_key("i").expect("key i");
    wait_js(
        &tab,
        "document.getElementById('invert-btn').getAttribute('aria-pressed') === 'true'",
        "invert",
    );
    assert!(info().contains("inverted"), "{}", info());
    tab.press_key("2").expect("key 2");
    std::thread::sleep(Duration::from_millis(300));
    let bone = info();
    tab.press_key(" ").expect("key space");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pressed(), "false", "space resets invert");
    assert_ne!(info(), bone, "space resets the window");

    // Accept the first finding, reject the second with a reason.
    let (f_accept, f_reject) = (a.findings[0].0, a.findings[1].0);
    click(&tab, &format!(".finding[data-finding-id=\"{f_accept}\"] .accept-btn"));
    wait_db(&db_path, &format!("SELECT count(*) FROM decisions WHERE finding_id = {f_accept}"), 1);
    click(&tab, &format!(".finding[data-finding-id=\"{f_reject}\"] .reject-btn"));
    type_into(&tab, "#reject-reason", "callus, not a fracture");
    click(&tab, "#reject-confirm");
    wait_db(&db_path, &format!("SELECT count(*) FROM decisions WHERE finding_id = {f_reject}"), 1);
    wait_js(&tab, "document.getElementById('unverified-label').hidden", "the label to go");
    std::thread::sleep(Duration::from_millis(400));
    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    std::fs::write(artifacts_dir().join("review-screen.png"), &shot).expect("save screenshot");

    // Draw a missed fracture on a second image.
    open_image(&tab, b.id, b.findings.len());
    let view = fitted_view(&tab, b.width, b.height);
    let want = [0.30 * b.width, 0.30 * b.height, 0.55 * b.width, 0.60 * b.height];
    let page = |x: f64, y: f64| (view.left + view.tx + x * view.s, view.top + view.ty + y * view.s);
    click(&tab, "#draw-missed");
    let (x0, y0) = page(want[0], want[1]);
    let (x1, y1) = page(want[2], want[3]);
    use Input::DispatchMouseEventTypeOption as M;
    mouse(&tab, M::MouseMoved, x0, y0, false);
    mouse(&tab, M::MousePressed, x0, y0, true);
    for k in 1..=10 {
        let t = f64::from(k) / 10.0;
        mouse(&tab, M::MouseMoved, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, true);
    }
    mouse(&tab, M::MouseReleased, x1, y1, false);
    type_into(&tab, "#missed-note", "hairline, distal");
    click(&tab, "#missed-save");
    wait_db(&db_path, "SELECT count(*) FROM decisions WHERE kind = 'missed'", 1);

    // Confirm the blank image negative.
    open_image(&tab, blank.id, 0);
    click(&tab, "#confirm-negative");
    wait_db(&db_path, "SELECT count(*) FROM decisions WHERE kind = 'no_fracture'", 1);

    // ArrowUp moves to the newer neighbour in the worklist.
    tab.press_key("ArrowUp").expect("key up");
    let above = all.iter().position(|i| i.id == blank.id).map(|p| p.checked_sub(1));
    if let Some(Some(p)) = above {
        let id = all[p].id;
        wait_js(&tab, &format!("location.hash === '#image={id}'"), "ArrowUp");
    } else {
        // The blank image is the newest: ArrowDown moves to the next one instead.
        tab.press_key("ArrowDown").expect("key down");
        let id = all[1].id;
        wait_js(&tab, &format!("location.hash === '#image={id}'"), "ArrowDown");
    }

    // Live update: an image arriving now appears in the open worklist by itself.
    let late = root.join("capture").join("late.png");
    image::GrayImage::from_pixel(200, 200, image::Luma([120])).save(&late).expect("late image");
    wait_js(&tab, "document.querySelectorAll('.wl-item').length === 8", "the new image to appear");

    // The database holds exactly those four decisions, by alice.
    let db = Db::open_existing(&db_path).expect("db");
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT image_id, finding_id, kind, text, x1, y1, x2, y2, reviewer FROM decisions
             ORDER BY id",
        )
        .expect("q");
    type Row = (i64, Option<i64>, String, Option<String>, Option<[f64; 4]>, String);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            let bx = match r.get::<_, Option<f64>>(4)? {
                Some(x1) => Some([x1, r.get(5)?, r.get(6)?, r.get(7)?]),
                None => None,
            };
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, bx, r.get(8)?))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].1, rows[0].2.as_str()), (a.id, Some(f_accept), "accept"));
    assert_eq!((rows[1].0, rows[1].1, rows[1].2.as_str()), (a.id, Some(f_reject), "reject"));
    assert_eq!(rows[1].3.as_deref(), Some("callus, not a fracture"));
    assert_eq!((rows[2].0, rows[2].2.as_str()), (b.id, "missed"));
    assert_eq!(rows[2].3.as_deref(), Some("hairline, distal"));
    let drawn = rows[2].4.expect("missed box");
    // Mouse positions reach the page as whole CSS pixels: at most half a pixel, i.e.
    // 0.5 / scale image pixels, plus the page's 0.1-pixel rounding.
    let tol = 0.5 / view.s + 0.1 + 1e-6;
    for (got, want) in drawn.iter().zip(want) {
        assert!((got - want).abs() <= tol, "missed box {drawn:?} vs drawn {want:?} (tol {tol})");
    }
    assert_eq!((rows[3].0, rows[3].2.as_str()), (blank.id, "no_fracture"));
    assert!(rows.iter().all(|r| r.5 == "alice"));

    // The audit chain is intact and holds the same decisions, plus the views.
    let head = fracture_device::db::audit::verify_audit_chain(db.conn()).expect("chain intact");
    assert!(head.rows > 0);
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT action, json_extract(detail, '$.image_id') FROM audit WHERE actor = 'alice'",
        )
        .expect("q");
    let audit: Vec<(String, Option<i64>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let decisions: Vec<(&str, Option<i64>)> = audit
        .iter()
        .filter(|(a, _)| a.starts_with("review.") && a != "review.view")
        .map(|(a, i)| (a.as_str(), *i))
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("review.accept", Some(a.id)),
            ("review.reject", Some(a.id)),
            ("review.missed", Some(b.id)),
            ("review.no_fracture", Some(blank.id)),
        ]
    );
    for id in [a.id, b.id, blank.id] {
        assert!(audit.iter().any(|(act, i)| act == "review.view" && *i == Some(id)), "view {id}");
    }
    assert!(audit.iter().any(|(act, _)| act == "session.login"));
}
