//! Typed settings a resolved cell carries, below the cell core: the emulated app's parameters, the simulator's
//! model and the RL learner's.
//! Data and its validation only; what runs them lives above ([`crate::backends`], [`crate::rl`]).

pub mod emulated;
pub mod rl;
pub mod simulator;
