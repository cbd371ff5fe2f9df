//! A short, seeded fuzz pass over the StartRun body through the real agent: bodies mutated from the repository's
//! scenarios and hand-written edge cases are each refused with a JSON 4xx error, or accepted and then run (against a
//! local HTTP sink, or a closed port for redis, with a deadline of 0.3 s) and over by their deadline plus a grace;
//! a third of the accepted runs are stopped at once. The agent must answer throughout. For long runs, see the
//! cargo-fuzz target `start_run` (fuzz/README.md), which shares the mutations (tests/fuzzing).

mod common;
mod fuzzing;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Agent, TOKEN, counting_server};
use fuzzing::{Choices, Seeded, bound_for_running, corpus, mutate};

const SEED: u64 = 0x5EED_2026;
const ITERATIONS: usize = 1000;
const MAX_RUNS: usize = 4;
const DEADLINE_S: f64 = 0.3;
/// Past its deadline, a run must be over within this (a loaded machine; the agent's own bound is about 6 s).
const GRACE: Duration = Duration::from_secs(15);

struct Pending {
    run: String,
    body: String,
    started: Instant,
}

fn shorten(text: &str) -> String {
    text.chars().take(1500).collect()
}

/// Drops the runs that are over; panics on one past its deadline and grace.
fn settle(agent: &Agent, pending: &mut Vec<Pending>) {
    pending.retain(|p| {
        let (status, answer) = agent.json("GET", &format!("/v1/runs/{}", p.run), None);
        assert_eq!(status, 200, "{answer}");
        let over = ["finished", "stopped", "failed"].contains(&answer["state"].as_str().unwrap_or_default());
        let limit = Duration::from_secs_f64(DEADLINE_S) + GRACE;
        assert!(
            over || p.started.elapsed() < limit,
            "run {} still {} after {:?} (deadline {DEADLINE_S} s); its body: {}",
            p.run,
            answer["state"],
            p.started.elapsed(),
            shorten(&p.body)
        );
        !over
    });
}

#[test]
fn mutated_start_bodies_are_refused_or_run_and_end_by_their_deadline() {
    let (sink, _) = counting_server();
    let data = tempfile::tempdir().unwrap();
    let max_runs = MAX_RUNS.to_string();
    let agent = Agent::start(data.path(), &["--token", TOKEN, "--max-users", "200", "--max-runs", &max_runs]);
    let corpus = corpus(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap());
    assert!(corpus.len() >= 10, "{} bodies in the corpus", corpus.len());
    let mut choices = Seeded(SEED);
    let mut pending: Vec<Pending> = Vec::new();
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        let mut body = corpus[choices.below(corpus.len())].clone();
        let rounds = 1 + choices.below(4);
        mutate(&mut body, &mut choices, rounds);
        bound_for_running(&mut body, DEADLINE_S, &sink, "redis://127.0.0.1:9");
        while pending.len() >= MAX_RUNS {
            settle(&agent, &mut pending);
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = Instant::now();
        let (status, answer) = agent.json("POST", "/v1/runs", Some(&body));
        *answers.entry(status).or_default() += 1;
        match status {
            201 => {
                let run = answer["run_id"].as_str().unwrap().to_string();
                if choices.below(3) == 0 {
                    let (status, stopped) = agent.json("POST", &format!("/v1/runs/{run}/stop"), None);
                    assert_eq!(status, 200, "{stopped}");
                }
                pending.push(Pending { run, body: body.to_string(), started: sent });
            }
            400 | 403 | 413 => {
                assert!(answer["error"].is_string(), "{status} without a JSON error: {answer}");
            }
            _ => panic!("answer {status} {answer} to {}\n{}", shorten(&body.to_string()), agent.log()),
        }
    }
    while !pending.is_empty() {
        settle(&agent, &mut pending);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = agent.json("GET", "/v1/health", None);
    assert_eq!(status, 200);
    eprintln!("{ITERATIONS} bodies in {:?}: answers {answers:?}", started.elapsed());
    // The mutations are mild enough that many bodies still run, and hostile enough that many are refused.
    assert!(answers.get(&201).copied().unwrap_or(0) >= 20, "{answers:?}");
    assert!(answers.get(&400).copied().unwrap_or(0) >= 20, "{answers:?}");
}
