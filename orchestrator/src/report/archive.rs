//! `orch report --zip`: one file holding the report, its exports and the run folder (CSVs and logs), laid out
//! so that the links between them work once unpacked anywhere:
//!
//! ```text
//! <run-tag>/index.html, cells/*.html, summary.csv, summary.json, summary.md
//! <run-tag>/logs/...   the run folder (checkpoints under models/ left out: they are large and binary)
//! ```
//!
//! Symbolic links in the run folder are never followed: one that stays inside it is archived as a link, one that
//! leaves it is left out with a warning.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

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

/// A thing of the run folder the archive holds.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RunEntry {
    File(PathBuf),
    /// A symbolic link that stays inside the run folder: archived as a link, its target never read.
    Link {
        path: PathBuf,
        target: PathBuf,
    },
}

impl RunEntry {
    fn path(&self) -> &Path {
        match self {
            RunEntry::File(path) | RunEntry::Link { path, .. } => path,
        }
    }
}

/// Writes `zip_path` (through a temporary file) from the report's files and the run folder. Returns a warning
/// per symbolic link left out: one pointing outside the run folder could otherwise carry any file into the zip.
pub fn write_zip(zip_path: &Path, tag: &str, report: &[ArchiveEntry], run_dir: &Path) -> Result<Vec<String>> {
    let tmp = zip_path.with_extension("zip.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut zip = ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated).unix_permissions(0o644);
    for entry in report {
        zip.start_file(format!("{tag}/{}", entry.path), options)?;
        zip.write_all(&entry.bytes)?;
    }
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    collect_entries(run_dir, run_dir, &mut entries, &mut warnings)?;
    entries.sort();
    for entry in entries {
        let relative = entry.path().strip_prefix(run_dir).expect("under the run folder");
        let name: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let name = format!("{tag}/logs/{}", name.join("/"));
        match &entry {
            RunEntry::File(path) => {
                zip.start_file(name, options)?;
                let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                zip.write_all(&bytes)?;
            }
            RunEntry::Link { target, .. } => zip.add_symlink(name, target.to_string_lossy(), options)?,
        }
    }
    zip.finish().context("finishing the zip")?.sync_all()?;
    fs::rename(&tmp, zip_path).with_context(|| format!("renaming {} to {}", tmp.display(), zip_path.display()))?;
    Ok(warnings)
}

fn collect_entries(root: &Path, dir: &Path, out: &mut Vec<RunEntry>, warnings: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        // The entry itself, links not followed.
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_symlink() {
            let target = fs::read_link(&path).with_context(|| format!("reading the link {}", path.display()))?;
            if stays_inside(root, &path, &target) {
                out.push(RunEntry::Link { path, target });
            } else {
                warnings.push(format!(
                    "{} is a symbolic link to {} outside the run folder: left out of the zip",
                    path.display(),
                    target.display()
                ));
            }
        } else if kind.is_dir() {
            if dir == root && SKIPPED.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            collect_entries(root, &path, out, warnings)?;
        } else if kind.is_file() {
            out.push(RunEntry::File(path));
        }
    }
    Ok(())
}

/// Whether a link at `link` (under `root`) with `target` as written names a path under `root`, by its components
/// alone: relative, and its `..` never climbing above `root`. Unpacked, such a link points inside the archive.
fn stays_inside(root: &Path, link: &Path, target: &Path) -> bool {
    let Ok(from) = link.parent().unwrap_or(root).strip_prefix(root) else { return false };
    let mut depth = from.components().count();
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_links_that_stay_below_the_root_stay_inside() {
        let root = Path::new("/run");
        let link = Path::new("/run/cell/training.csv");
        assert!(stays_inside(root, link, Path::new("../other/training.csv")));
        assert!(stays_inside(root, link, Path::new("./x")));
        assert!(!stays_inside(root, link, Path::new("../../secret")));
        assert!(!stays_inside(root, link, Path::new("/etc/passwd")));
        assert!(!stays_inside(root, link, Path::new("a/../../../x")));
    }
}
