//! The backends a cell runs on, each above the cell core: [`sim`] (the embedded simulator), [`emulated`] (the
//! app served over real HTTP on this machine, under real load) and [`kubernetes`] (a real cluster). The emulated
//! and kubernetes backends share one agent-driven loop, [`agent_driven`].

pub mod agent_driven;
pub mod emulated;
pub mod kubernetes;
pub mod sim;

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::cell::{Backend, CancelToken, CellConfig, CellSummary, Policy, SecondMetrics};
use crate::settings::emulated::EmulatedRun;
use kubernetes::settings::KubernetesRun;

/// One cell to run: what it is, where its files go, the run-wide settings of its backend, and the token that asks
/// it to stop.
pub struct CellRun<'a> {
    pub id: &'a str,
    pub config: &'a CellConfig,
    /// The cell's folder: agent CSVs and other backend files go here.
    pub dir: &'a Path,
    pub emulated: Option<&'a EmulatedRun>,
    pub kubernetes: Option<&'a KubernetesRun>,
    pub cancel: &'a CancelToken,
}

/// Runs a cell on the backend its config names with `policy`.
pub fn run(
    cell: &CellRun<'_>,
    mut policy: Box<dyn Policy>,
    on_second: impl FnMut(&SecondMetrics),
    on_scale: impl FnMut(u64, &str, u32, u32, &str),
) -> Result<CellSummary> {
    match cell.config.backend {
        Backend::Sim => Ok(sim::simulate(cell.id, cell.config, policy.as_mut(), on_second, on_scale)),
        Backend::Emulated => {
            let run = cell.emulated.ok_or_else(|| anyhow!("an emulated cell needs the matrix's emulated settings"))?;
            emulated::lifecycle::run_cell(cell, run, policy, on_second, on_scale)
        }
        Backend::Kubernetes => {
            let run =
                cell.kubernetes.ok_or_else(|| anyhow!("a kubernetes cell needs the matrix's kubernetes settings"))?;
            kubernetes::lifecycle::run_cell(cell, run, policy, on_second, on_scale)
        }
    }
}
