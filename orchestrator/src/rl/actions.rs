//! The moves a policy picks from, one per service per decision (multi-discrete), and their masks.
//!
//! - `steps` (default, `max_step: 2`): add −max_step…+max_step replicas, the reference action space;
//! - `relative`: halve (rounded down), −1, keep, +1, double, triple, so a surge is answered in one decision
//!   (a service at 2 pods can go to 6) while small corrections stay possible.
//!
//! A move is allowed when its target lies within the service's `[min, max]` replicas and no earlier move of the
//! list reaches the same target (halving 2 pods is −1; keeping is always allowed), so every allowed move of a
//! service leads somewhere different and the policy's probabilities are not split between equal outcomes. A
//! masked move, if taken anyway, is clamped to the bounds.

use crate::app::AppModel;
use crate::cell::Observation;
use crate::settings::rl::ActionSpace;

/// The moves of [`ActionSpace::Relative`], in action order.
const RELATIVE: [Relative; 6] =
    [Relative::Halve, Relative::Add(-1), Relative::Add(0), Relative::Add(1), Relative::Times(2), Relative::Times(3)];

#[derive(Debug, Clone, Copy)]
enum Relative {
    Halve,
    Add(i64),
    Times(i64),
}

impl ActionSpace {
    /// True for the reference space (so configs that do not name one keep their hashes).
    pub fn is_default(&self) -> bool {
        *self == ActionSpace::default()
    }

    /// Moves per service.
    pub fn len(&self) -> usize {
        match self {
            ActionSpace::Steps { max_step } => 2 * *max_step as usize + 1,
            ActionSpace::Relative => RELATIVE.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The index of "keep the replicas as they are".
    pub fn stay(&self) -> usize {
        match self {
            ActionSpace::Steps { max_step } => *max_step as usize,
            ActionSpace::Relative => 2,
        }
    }

    /// Desired replicas after `action` from `current`, before clamping to the bounds.
    pub fn target(&self, action: usize, current: u32) -> i64 {
        assert!(action < self.len(), "action {action} out of range 0..{}", self.len());
        let current = current as i64;
        match self {
            ActionSpace::Steps { max_step } => current + action as i64 - *max_step as i64,
            ActionSpace::Relative => match RELATIVE[action] {
                Relative::Halve => current / 2,
                Relative::Add(delta) => current + delta,
                Relative::Times(factor) => current * factor,
            },
        }
    }

    /// Desired replicas after `action`, clamped to `[min, max]`.
    pub fn apply(&self, action: usize, current: u32, min: u32, max: u32) -> u32 {
        self.target(action, current).clamp(min as i64, max as i64) as u32
    }

    /// Which moves are allowed for a service at `current` replicas within `[min, max]`, in action order.
    pub fn service_mask(&self, current: u32, min: u32, max: u32) -> Vec<bool> {
        let stay = self.stay();
        let targets: Vec<i64> = (0..self.len()).map(|a| self.target(a, current)).collect();
        (0..self.len())
            .map(|a| {
                if a == stay {
                    return true;
                }
                let t = targets[a];
                let in_bounds = t >= min as i64 && t <= max as i64;
                let first_to_reach = t != current as i64 && !targets[..a].contains(&t);
                in_bounds && first_to_reach
            })
            .collect()
    }

    /// `services × len()` flags, row-major: the allowed moves of every service of `app` as `observation` sees it.
    pub fn mask(&self, app: &AppModel, observation: &Observation) -> Vec<bool> {
        let mut mask = Vec::with_capacity(app.services.len() * self.len());
        for (service, seen) in app.services.iter().zip(&observation.services) {
            mask.extend(self.service_mask(seen.spec_replicas, service.replicas.min, service.replicas.max));
        }
        mask
    }

    /// The allowed move whose target is nearest to `goal` (ties: the smaller change), e.g. to express a
    /// teacher's decision in this action space.
    pub fn toward(&self, current: u32, goal: u32, min: u32, max: u32) -> usize {
        let mask = self.service_mask(current, min, max);
        let goal = goal as i64;
        (0..self.len())
            .filter(|&a| mask[a])
            .min_by_key(|&a| {
                let t = self.target(a, current);
                ((t - goal).abs(), (t - current as i64).abs())
            })
            .expect("keeping is always allowed")
    }

    /// How a move reads in a decision's reason: `+2`, `-1`, `x2`, `/2`.
    pub fn label(&self, action: usize) -> String {
        match self {
            ActionSpace::Steps { max_step } => format!("{:+}", action as i64 - *max_step as i64),
            ActionSpace::Relative => match RELATIVE[action] {
                Relative::Halve => "/2".into(),
                Relative::Add(delta) => format!("{delta:+}"),
                Relative::Times(factor) => format!("x{factor}"),
            },
        }
    }

    /// A problem with the space's parameters, if any.
    pub fn check(&self) -> Result<(), ActionSpaceError> {
        match self {
            ActionSpace::Steps { max_step } if *max_step == 0 || *max_step > 50 => {
                Err(ActionSpaceError::MaxStep(*max_step))
            }
            _ => Ok(()),
        }
    }
}

/// An action space whose parameters are out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionSpaceError {
    #[error("max_step must be 1 to 50, got {0}")]
    MaxStep(u32),
}
