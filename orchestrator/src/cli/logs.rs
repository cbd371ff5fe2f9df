//! `orch logs <cell-id>`: a cell's run.log and stderr.log, read from its run folder, never written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// `orch logs`: prints the cell's run.log, and its stderr.log to stderr; an unknown cell is an error with exit code 1.
pub fn run(logs_dir: &Path, cell: &str, run: Option<&str>) -> ExitCode {
    match find_cell(logs_dir, cell, run) {
        Ok(dir) => {
            let log = std::fs::read_to_string(dir.join(crate::run_folder::RUN_LOG)).unwrap_or_default();
            print!("{log}");
            let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            if !stderr.is_empty() {
                eprintln!("--- {} ---", dir.join("stderr.log").display());
                eprint!("{stderr}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The folder of `cell` (a full id, or one without its hash) under `logs_dir`, in run `run` if given.
pub fn find_cell(logs_dir: &Path, cell: &str, run: Option<&str>) -> Result<PathBuf> {
    let runs: Vec<PathBuf> = match run {
        Some(tag) => {
            let dir = logs_dir.join(tag);
            if !dir.is_dir() {
                bail!("no run {tag:?} under {}", logs_dir.display());
            }
            vec![dir]
        }
        None => {
            let mut dirs: Vec<PathBuf> = fs::read_dir(logs_dir)
                .with_context(|| format!("reading {}", logs_dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            dirs
        }
    };
    let mut hits = Vec::new();
    for run_dir in runs {
        let Ok(entries) = fs::read_dir(&run_dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let without_hash = name.rsplit_once('-').map_or(name.as_str(), |(n, _)| n);
            if (name == cell || without_hash == cell) && entry.path().join(crate::run_folder::CONFIG_YAML).is_file() {
                hits.push(entry.path());
            }
        }
    }
    hits.sort();
    match hits.len() {
        0 => bail!("no cell {cell:?} under {}", logs_dir.display()),
        1 => Ok(hits.remove(0)),
        _ => bail!(
            "{cell:?} is in several runs; pass --run <tag>:\n{}",
            hits.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n")
        ),
    }
}
