//! The rest of a load shape from a point in time, for a run that takes over a lost agent's users: started on
//! another agent with the lost one's `agent_index`/`agent_count` and seed, it runs exactly the lost agent's users
//! (new users: their cookies and connections are gone) along the shape from then on.

use load_agent::scenario::{ArrivalRate, LoadShape, Ramp, RateStage, Stage};

/// `shape` from `from_s` seconds on, as a shape starting at 0; `None` once it has ended.
pub fn remainder(shape: &LoadShape, from_s: f64) -> Option<LoadShape> {
    match shape {
        LoadShape::Stages(stages) => {
            let rest: Vec<Stage> = stages
                .iter()
                .filter(|s| s.end > from_s)
                .map(|s| Stage { end: s.end - from_s, users: s.users, spawn_rate: s.spawn_rate })
                .collect();
            (!rest.is_empty()).then_some(LoadShape::Stages(rest))
        }
        LoadShape::Ramps(ramps) => {
            let mut start = 0.0;
            let mut rest = Vec::new();
            for ramp in ramps {
                let end = start + ramp.over + ramp.hold;
                if end > from_s {
                    if start >= from_s {
                        rest.push(*ramp);
                    } else {
                        // In progress: ramp (from none, as a new run starts) over what is left of its ramp.
                        let into = from_s - start;
                        let over = (ramp.over - into).max(0.0);
                        let hold = ramp.hold - (into - ramp.over).max(0.0);
                        rest.push(Ramp { users: ramp.users, over, hold });
                    }
                }
                start = end;
            }
            (!rest.is_empty()).then_some(LoadShape::Ramps(rest))
        }
        LoadShape::ArrivalRate(open) => {
            let rate_now = shape.arrival_rate(from_s)?;
            let mut start = 0.0;
            let mut stages = Vec::new();
            for stage in &open.stages {
                let end = start + stage.duration;
                if end > from_s {
                    let duration = end - from_s.max(start);
                    stages.push(RateStage { duration, target: stage.target });
                }
                start = end;
            }
            Some(LoadShape::ArrivalRate(ArrivalRate { start_rate: rate_now, stages, ..open.clone() }))
        }
        LoadShape::Trace(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_shift_and_finished_ones_drop() {
        let shape = LoadShape::Stages(vec![
            Stage { end: 10.0, users: 5, spawn_rate: 100.0 },
            Stage { end: 25.0, users: 40, spawn_rate: 100.0 },
        ]);
        let rest = remainder(&shape, 12.0).unwrap();
        assert_eq!(rest, LoadShape::Stages(vec![Stage { end: 13.0, users: 40, spawn_rate: 100.0 }]));
        assert_eq!(remainder(&shape, 25.0), None);
    }

    #[test]
    fn ramps_and_rates_continue_from_the_cut() {
        let ramps =
            LoadShape::Ramps(vec![Ramp { users: 10, over: 4.0, hold: 6.0 }, Ramp { users: 0, over: 2.0, hold: 0.0 }]);
        let rest = remainder(&ramps, 7.0).unwrap();
        assert_eq!(
            rest,
            LoadShape::Ramps(vec![Ramp { users: 10, over: 0.0, hold: 3.0 }, Ramp { users: 0, over: 2.0, hold: 0.0 }])
        );
        assert_eq!(rest.duration_s(), ramps.duration_s() - 7.0);
        let open = LoadShape::ArrivalRate(ArrivalRate {
            start_rate: 0.0,
            stages: vec![RateStage { duration: 10.0, target: 100.0 }, RateStage { duration: 10.0, target: 100.0 }],
            preallocated_users: 5,
            max_users: 50,
            arrivals: Default::default(),
        });
        let rest = remainder(&open, 5.0).unwrap();
        assert_eq!(rest.arrival_rate(0.0), Some(50.0));
        assert_eq!(rest.arrival_rate(4.9).map(|r| r.round()), Some(99.0));
        assert_eq!(rest.duration_s(), 15.0);
    }
}
