//! `orch report --zip`: one file holding the report, its exports and the run folder (CSVs and logs), laid out
//! so that the links between them work once unpacked anywhere:
//!
//! ```text
//! <run-tag>/index.html, cells/*.html, summary.csv, summary.json, summary.md
//! <run-tag>/logs/...   the run folder (checkpoints under models/ left out: they are large and binary)
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Folders of the run folder the archive leaves out.
const SKIPPED: [&str; 1] = ["models"];

pub struct ArchiveEntry {
    /// Path inside the report folder, `/`-separated.
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Writes `zip_path` (through a temporary file) from the report's files and the run folder.
pub fn write_zip(zip_path: &Path, tag: &str, report: &[ArchiveEntry], run_dir: &Path) -> Result<()> {
    let tmp = zip_path.with_extension("zip.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut zip = ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated).unix_permissions(0o644);
    for entry in report {
        zip.start_file(format!("{tag}/{}", entry.path), options)?;
        zip.write_all(&entry.bytes)?;
    }
    let mut files = Vec::new();
    collect_files(run_dir, run_dir, &mut files)?;
    files.sort();
    for path in files {
        let relative = path.strip_prefix(run_dir).expect("under the run folder");
        let name: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        zip.start_file(format!("{tag}/logs/{}", name.join("/")), options)?;
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        zip.write_all(&bytes)?;
    }
    zip.finish().context("finishing the zip")?.sync_all()?;
    fs::rename(&tmp, zip_path).with_context(|| format!("renaming {} to {}", tmp.display(), zip_path.display()))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            if dir == root && SKIPPED.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            collect_files(root, &path, out)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            // A linked file (e.g. a cell's training.csv shared by several cells) is archived as a copy; linked
            // folders are left out, as they could loop or reach outside the run.
            out.push(path);
        }
    }
    Ok(())
}
