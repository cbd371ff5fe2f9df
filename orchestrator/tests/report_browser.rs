//! The report in a real browser: Debian's chromium, headless, driven over the DevTools protocol. The index and
//! a cell page that has every optional section must load with no console error, no uncaught exception and no
//! request other than the page itself; screenshots are kept in target/test-artifacts/.

mod cdp;
mod common;
mod report_support;

use std::path::PathBuf;

use common::Scratch;
use report_support::*;

fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

#[test]
fn index_and_cell_pages_load_offline_without_errors_in_headless_chromium() {
    let scratch = Scratch::new();
    let run = real_run(&scratch, "browser");
    let id = cell_of(&run, "hpa-cpu-60", 1);
    add_training(&run.join(&id));
    add_agent(&run.join(&id), "agent-1");
    add_emulated_twin(&run, &id);
    add_broken_cells(&run, &cell_of(&run, "static-max", 1));
    // Markup in names would run here if it were not escaped, and log a console error.
    let hostile = add_hostile_cell(&run, &cell_of(&run, "hpa-cpu-60", 2));
    let result = scratch.orch(&["report", "logs/browser"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let report = scratch.path("reports/browser");

    let mut browser = cdp::Browser::start();
    // A control page proves the checks can fail: it logs an error, throws, and fetches from the network.
    let control = scratch.path("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><title>control</title><img src=\"http://127.0.0.1:9/pixel.png\">\
         <script>console.error('control error'); undefinedFunction();</script>",
    )
    .unwrap();
    let seen = browser.open(&control);
    assert!(seen.console_errors.iter().any(|e| e.contains("control error")), "{seen:?}");
    assert!(!seen.exceptions.is_empty(), "{seen:?}");
    assert!(seen.requests.iter().any(|r| r.starts_with("http://127.0.0.1:9/")), "{seen:?}");

    let artifacts = artifacts_dir();
    for (page, shot) in [
        (report.join("index.html"), "report-index.png"),
        (cell_page(&report, &id), "report-cell.png"),
        (cell_page(&report, &hostile), "report-cell-escaped.png"),
    ] {
        let seen = browser.open(&page);
        let url = format!("file://{}", page.canonicalize().unwrap().display());
        assert!(seen.console_errors.is_empty(), "{}: console errors {:?}", page.display(), seen.console_errors);
        assert!(seen.exceptions.is_empty(), "{}: exceptions {:?}", page.display(), seen.exceptions);
        assert!(seen.log_errors.is_empty(), "{}: log errors {:?}", page.display(), seen.log_errors);
        assert_eq!(seen.requests, vec![url.clone()], "{}: the page itself is the only request", page.display());
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
        assert!(png.len() > 20_000, "a screenshot of a rendered page, not a blank one ({} bytes)", png.len());
        std::fs::write(artifacts.join(shot), png).expect("saving the screenshot");
    }
}
