//! HTML comparison reports of a run folder: `orch report logs/<run-tag>`.
//!
//! [`load`] reads the run folder (its JSON files through [`files`]), [`analysis`] aggregates it with [`stats`],
//! [`html`] renders the index and a page per cell ([`charts`], [`graph`]), [`export`] writes summary.csv/json/md,
//! [`archive`] the zip, and [`compare`] several runs side by side. The report is written to a staging folder and moved into place, so a
//! failed render never leaves half a report over a good one.

pub mod analysis;
pub mod archive;
pub mod charts;
pub mod compare;
pub mod css;
pub mod export;
mod files;
pub mod format;
pub mod graph;
pub mod html;
pub mod load;
pub mod series;
pub mod stats;

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};

use archive::ArchiveEntry;
use html::Renderer;
use load::RunFolder;
use stats::BootstrapConfig;

/// Bad input to `orch report` (exit code 2): a path that is not a run folder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotARunFolder(pub String);

#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The report folder, e.g. reports/<run-tag>.
    pub out: PathBuf,
    /// Also write <out>.zip.
    pub zip: bool,
    pub bootstrap: BootstrapConfig,
}

#[derive(Debug, Clone)]
pub struct ReportOutcome {
    pub out: PathBuf,
    pub index: PathBuf,
    pub zip: Option<PathBuf>,
    pub cells: usize,
    pub incomplete: usize,
    /// Bytes of HTML written (index and cell pages).
    pub html_bytes: u64,
    /// What the user should hear about (e.g. links left out of the zip).
    pub warnings: Vec<String>,
}

/// reports/<run-tag> for a run folder logs/<run-tag>.
pub fn default_out(run_dir: &Path, reports_dir: &Path) -> PathBuf {
    let tag = run_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        .or_else(|| run_dir.file_name().map(|n| n.to_os_string()))
        .unwrap_or_else(|| "report".into());
    reports_dir.join(tag)
}

/// The zip next to a report folder: reports/<run-tag>.zip.
pub fn zip_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "report".into());
    name.push(".zip");
    out.with_file_name(name)
}

/// Renders the report of `run_dir` into `options.out`.
pub fn render_run(run_dir: &Path, options: &ReportOptions) -> Result<ReportOutcome> {
    if !run_dir.is_dir() {
        return Err(NotARunFolder(format!("{}: no such run folder", run_dir.display())).into());
    }
    let run = load::read_run(run_dir).map_err(|e| NotARunFolder(format!("{e:#}")))?;
    let analysis = analysis::analyse(&run, &options.bootstrap);
    let renderer = Renderer::new()?;
    let staging = Staging::new(&options.out)?;
    let logs = relative_link(&staging.final_dir, run_dir)?;
    let zip = options.zip.then(|| zip_path(&options.out));

    let mut exports = vec![
        ("summary.csv: every figure, one row per group, policy and metric".to_string(), "summary.csv".to_string()),
        ("summary.json: the run, its cells and the whole analysis".to_string(), "summary.json".to_string()),
        ("summary.md: the tables in Markdown".to_string(), "summary.md".to_string()),
    ];
    if let Some(zip) = &zip {
        let name = zip.file_name().expect("zip name").to_string_lossy().into_owned();
        exports.push((
            format!("{name}: report, exports and the run folder"),
            format!("../{}", format::url_segment(&name)),
        ));
    }
    let index_view = html::index_view(&run, &analysis, exports.clone());
    let index = renderer.render("index.html", &index_view, &logs)?;
    let mut archived: Vec<ArchiveEntry> = Vec::new();
    if zip.is_some() {
        // Inside the zip the run folder sits at logs/, and the zip does not list itself.
        let zip_view = html::index_view(&run, &analysis, exports[..3].to_vec());
        archived.push(ArchiveEntry {
            path: "index.html".into(),
            bytes: renderer.render("index.html", &zip_view, "logs")?.into_bytes(),
        });
    }
    let mut html_bytes = index.len() as u64;
    staging.write("index.html", index.as_bytes())?;

    let (cell_bytes, cell_archive) = render_cells(&run, &renderer, &staging, &format!("../{logs}"), zip.is_some())?;
    html_bytes += cell_bytes;
    archived.extend(cell_archive);

    for (name, bytes) in [
        ("summary.csv", export::summary_csv(&analysis)?),
        ("summary.json", export::summary_json(&run, &analysis)?),
        ("summary.md", export::summary_md(&run, &analysis).into_bytes()),
    ] {
        staging.write(name, &bytes)?;
        if zip.is_some() {
            archived.push(ArchiveEntry { path: name.into(), bytes });
        }
    }
    let out = staging.commit()?;
    let mut warnings = Vec::new();
    if let Some(zip) = &zip {
        warnings = archive::write_zip(zip, &run.tag, &archived, run_dir)?;
    }
    Ok(ReportOutcome {
        index: out.join("index.html"),
        out,
        zip,
        cells: run.cells.len(),
        incomplete: run.cells.iter().filter(|c| !c.is_complete()).count(),
        html_bytes,
        warnings,
    })
}

/// Renders every cell's page, on as many threads as there are cores. Returns the HTML bytes written and, when
/// archiving, the pages as they link inside the zip.
fn render_cells(
    run: &RunFolder,
    renderer: &Renderer,
    staging: &Staging,
    logs: &str,
    archive: bool,
) -> Result<(u64, Vec<ArchiveEntry>)> {
    let mut twins: HashMap<(String, String, String, u64), Vec<usize>> = HashMap::new();
    for (i, cell) in run.cells.iter().enumerate() {
        if let Some(key) = cell.twin_key() {
            twins.entry(key).or_default().push(i);
        }
    }
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let archived = Mutex::new(Vec::new());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(run.cells.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cell) = run.cells.get(i) else { break };
                    let twin = cell.twin_key().and_then(|key| {
                        twins[&key].iter().map(|&j| &run.cells[j]).find(|other| other.backend != cell.backend)
                    });
                    let result = (|| -> Result<()> {
                        let view = html::cell_view(run, cell, twin);
                        let page = renderer.render("cell.html", &view, logs)?;
                        bytes.fetch_add(page.len(), Ordering::Relaxed);
                        staging.write(&format!("cells/{}", html::cell_page_file(&cell.id)), page.as_bytes())?;
                        if archive {
                            let page = renderer.render("cell.html", &view, "../logs")?;
                            let path = format!("cells/{}", html::cell_page_file(&cell.id));
                            archived
                                .lock()
                                .expect("archive lock")
                                .push((i, ArchiveEntry { path, bytes: page.into_bytes() }));
                        }
                        Ok(())
                    })();
                    if let Err(e) = result {
                        first_error.lock().expect("error lock").get_or_insert(e.context(format!("cell {}", cell.id)));
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error lock") {
        return Err(e);
    }
    let mut archived = archived.into_inner().expect("archive lock");
    archived.sort_by_key(|(i, _)| *i);
    Ok((bytes.into_inner() as u64, archived.into_iter().map(|(_, e)| e).collect()))
}

/// Compares several run folders, the first being the reference, into `out`.
pub fn render_comparison(run_dirs: &[PathBuf], out: &Path, bootstrap: &BootstrapConfig) -> Result<ReportOutcome> {
    if run_dirs.len() < 2 {
        return Err(NotARunFolder("--compare needs at least two run tags".into()).into());
    }
    let mut runs = Vec::new();
    for dir in run_dirs {
        if !dir.is_dir() {
            return Err(NotARunFolder(format!("{}: no such run folder", dir.display())).into());
        }
        let run = load::read_run(dir).map_err(|e| NotARunFolder(format!("{e:#}")))?;
        let analysis = analysis::analyse(&run, bootstrap);
        runs.push((run, analysis));
    }
    let (view, records) = compare::compare(&runs, bootstrap);
    let renderer = Renderer::new()?;
    let staging = Staging::new(out)?;
    let page = renderer.render("compare.html", &view, "")?;
    staging.write("index.html", page.as_bytes())?;
    staging.write("compare.csv", &compare::compare_csv(&records)?)?;
    let out = staging.commit()?;
    Ok(ReportOutcome {
        index: out.join("index.html"),
        out,
        zip: None,
        cells: runs.iter().map(|(r, _)| r.cells.len()).sum(),
        incomplete: runs.iter().map(|(r, _)| r.cells.iter().filter(|c| !c.is_complete()).count()).sum(),
        html_bytes: page.len() as u64,
        warnings: Vec::new(),
    })
}

/// `f` over `items` on as many threads as there are cores, results in order.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len()).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    results.lock().expect("results lock").push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A report folder being written next to its final place.
struct Staging {
    dir: PathBuf,
    final_dir: PathBuf,
}

impl Staging {
    fn new(out: &Path) -> Result<Staging> {
        let name = out.file_name().ok_or_else(|| anyhow!("{}: not a folder name", out.display()))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let parent = parent.canonicalize().with_context(|| format!("resolving {}", parent.display()))?;
        let dir = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("cells")).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging { dir, final_dir: parent.join(name) })
    }

    fn write(&self, relative: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(relative);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Moves the finished report into place, replacing an older one.
    fn commit(self) -> Result<PathBuf> {
        let old = self.final_dir.with_file_name(format!(
            ".{}.old-{}",
            self.final_dir.file_name().expect("name").to_string_lossy(),
            std::process::id()
        ));
        let had_old = self.final_dir.exists();
        if had_old {
            fs::rename(&self.final_dir, &old)
                .with_context(|| format!("moving the old {} aside", self.final_dir.display()))?;
        }
        fs::rename(&self.dir, &self.final_dir)
            .with_context(|| format!("moving the report to {}", self.final_dir.display()))?;
        if had_old {
            fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(self.final_dir.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Only a failed render leaves the staging folder behind; commit() has moved it otherwise.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A relative link from folder `from` to `to` (both made absolute), segments percent-encoded.
fn relative_link(from: &Path, to: &Path) -> Result<String> {
    let absolute = |p: &Path| -> Result<PathBuf> {
        Ok(match p.canonicalize() {
            Ok(p) => p,
            Err(_) => std::env::current_dir()?.join(p),
        })
    };
    let (from, to) = (absolute(from)?, absolute(to)?);
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut segments: Vec<String> = vec!["..".into(); from.len() - common];
    segments.extend(to[common..].iter().map(|c| format::url_segment(&c.as_os_str().to_string_lossy())));
    Ok(if segments.is_empty() { ".".into() } else { segments.join("/") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_climb_to_the_common_folder() {
        let root = tempfile::tempdir().unwrap();
        let reports = root.path().join("reports/t");
        let logs = root.path().join("logs/t");
        fs::create_dir_all(&reports).unwrap();
        fs::create_dir_all(&logs).unwrap();
        assert_eq!(relative_link(&reports, &logs).unwrap(), "../../logs/t");
        assert_eq!(zip_path(Path::new("reports/t")), PathBuf::from("reports/t.zip"));
        assert_eq!(default_out(&logs, Path::new("reports")), PathBuf::from("reports/t"));
    }
}
