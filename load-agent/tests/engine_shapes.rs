//! The closed model and a run's life: ramps, pre-emption, splitting users over agents, changes, start time,
//! deadline and stop. Times are checked with tolerances (the machine may be loaded), never exactly.

mod support;

use std::time::{Duration, SystemTime};

use load_agent::engine::RunHandle;
use load_agent::protocol::{ChangeRun, RunState};
use load_agent::scenario::{ArrivalRate, LoadShape, RateStage, Stage};
use support::{agent_counts, plan, sample_users, scenario, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_ramp_at_the_spawn_rate_and_a_new_stage_preempts_the_ramp() {
    let (url, _seen) = serve().await;
    // 0-1.5 s: up to 10 at 10/s; 1.5-2.5 s: toward 40 at 20/s (about 30 by 2.5 s); then down to 4 at once.
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /r}]}]\n\
         shape: {stages: [{end: 1.5, users: 10, spawn_rate: 10}, {end: 2.5, users: 40, spawn_rate: 20}, {end: 3.5, users: 4, spawn_rate: 1000}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    let samples = sample_users(&handle, Duration::from_millis(20)).await;
    let at = |from: f64, to: f64| -> Vec<u64> {
        samples.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, u)| *u).collect()
    };
    let rising = at(0.0, 2.45);
    assert!(rising.windows(2).all(|w| w[0] <= w[1]), "the count only rises while ramping up: {samples:?}");
    // Users come one by one at 1/spawn_rate intervals, the first at once: about 6 by 0.5 s.
    let half = at(0.45, 0.55);
    assert!(half.iter().all(|u| (4..=8).contains(u)), "at 0.5 s: {half:?}");
    let held = at(1.15, 1.45);
    assert!(!held.is_empty() && held.iter().all(|&u| u == 10), "held at 10: {held:?}");
    let peak = *rising.iter().max().unwrap();
    assert!((25..=35).contains(&peak), "the ramp toward 40 was pre-empted near 30, got {peak}: {samples:?}");
    let late = at(2.8, 3.4);
    assert!(!late.is_empty() && late.iter().all(|&u| u == 4), "after the third stage settles: {late:?}");
    assert_eq!(handle.status().users, 0, "no users once the run is over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_split_users_and_classes_exactly() {
    let (url, seen) = serve().await;
    // 8 users of classes weighted 3:1: 6 a and 2 b in all, 4 users on each agent.
    let s = scenario(
        "users:\n  - {name: a, weight: 3, wait: {constant: 0.1}, on_start: [{method: GET, path: /start-a}], tasks: [{name: t, requests: [{method: GET, path: /s}]}]}\n\
         \x20 - {name: b, weight: 1, wait: {constant: 0.1}, on_start: [{method: GET, path: /start-b}], tasks: [{name: t, requests: [{method: GET, path: /s}]}]}\n\
         shape: {stages: [{end: 1.2, users: 8, spawn_rate: 1000}]}\n",
    );
    let mut first = plan(s, &url);
    first.agent_count = 2;
    let mut second = first.clone();
    second.agent_index = 1;
    let (a, b) = (RunHandle::start(first), RunHandle::start(second));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!((a.status().users, b.status().users), (4, 4));
    assert_eq!((a.status().target_users, b.status().target_users), (4, 4));
    assert_eq!((a.wait().await, b.wait().await), (RunState::Finished, RunState::Finished));
    let seen = seen.lock().unwrap();
    assert_eq!((seen.requests["GET /start-a"], seen.requests["GET /start-b"]), (6, 2));
    assert_eq!(seen.peers.len(), 8, "one connection per user");
    let total = agent_counts(&a)["GET /s"].0 + agent_counts(&b)["GET /s"].0;
    assert_eq!(seen.requests["GET /s"], total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_takes_a_new_user_target_or_shape() {
    let (url, _seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /c}]}]\n\
         shape: {stages: [{end: 4, users: 2, spawn_rate: 10}]}\n",
    );
    let handle = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(handle.status().users, 2);
    // Without a spawn rate, the current stage's (10/s) applies: 2 → 12 takes about a second.
    handle.change(&ChangeRun { users: Some(12), spawn_rate: None, shape: None }).unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let midway = handle.status();
    assert!((4..=9).contains(&midway.users), "ramping at 10/s: {} users", midway.users);
    assert_eq!(midway.target_users, 12);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(handle.status().users, 12);

    // Nonsense is refused, and changes nothing.
    let bad_rate = ChangeRun { users: Some(3), spawn_rate: Some(-1.0), shape: None };
    assert!(handle.change(&bad_rate).unwrap_err().contains("spawn_rate"));
    let nothing = ChangeRun { users: None, spawn_rate: None, shape: None };
    assert!(handle.change(&nothing).is_err());
    let stages = LoadShape::Stages(vec![Stage { end: 1.0, users: 1, spawn_rate: 1000.0 }]);
    let both = ChangeRun { users: Some(3), spawn_rate: None, shape: Some(stages.clone()) };
    assert!(handle.change(&both).is_err());
    let open = LoadShape::ArrivalRate(ArrivalRate {
        start_rate: 1.0,
        stages: vec![RateStage { duration: 1.0, target: 1.0 }],
        preallocated_users: 1,
        max_users: 1,
        arrivals: Default::default(),
    });
    assert!(handle.change(&ChangeRun { users: None, spawn_rate: None, shape: Some(open) }).is_err());
    let backwards = LoadShape::Stages(vec![
        Stage { end: 2.0, users: 1, spawn_rate: 1.0 },
        Stage { end: 1.0, users: 1, spawn_rate: 1.0 },
    ]);
    let error = handle.change(&ChangeRun { users: None, spawn_rate: None, shape: Some(backwards) }).unwrap_err();
    assert!(error.contains("shape.stages[1].end"), "{error}");
    assert_eq!(handle.status().users, 12);

    // A new shape counts its time from now: it ends 0.6 s after the change, well before the original 4 s.
    let changed_at = handle.status().elapsed_s;
    let shape = LoadShape::Stages(vec![Stage { end: 0.6, users: 1, spawn_rate: 1000.0 }]);
    handle.change(&ChangeRun { users: None, spawn_rate: None, shape: Some(shape) }).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.status().users, 1);
    assert_eq!(handle.wait().await, RunState::Finished);
    let ended = handle.status().elapsed_s;
    assert!(ended - changed_at > 0.55 && ended - changed_at < 1.5, "changed at {changed_at} s, ended at {ended} s");
    // Elapsed time stops with the run, and a finished run takes no change.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handle.status().elapsed_s, ended);
    assert_eq!(
        handle.change(&ChangeRun { users: Some(5), spawn_rate: None, shape: None }).unwrap_err(),
        "the run is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_or_stop_ends_a_run() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.05}\n    tasks: [{name: a, requests: [{method: GET, path: /d}]}]\n\
         shape: {stages: [{end: 3600, users: 3, spawn_rate: 1000}]}\n",
    );
    let mut with_deadline = plan(s.clone(), &url);
    with_deadline.deadline = Some(Duration::from_millis(800));
    let by_deadline = RunHandle::start(with_deadline);
    assert_eq!(by_deadline.wait().await, RunState::Stopped);
    let elapsed = by_deadline.status().elapsed_s;
    assert!((0.79..1.5).contains(&elapsed), "stopped at {elapsed} s");
    let requests = agent_counts(&by_deadline)["GET /d"].0;
    assert!(requests > 10, "{requests}");
    assert_eq!(seen.lock().unwrap().requests["GET /d"], requests, "requests in flight at the deadline were counted");

    let stopped = RunHandle::start(plan(s, &url));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stopped.status().state, RunState::Running);
    stopped.stop();
    stopped.stop();
    assert_eq!(stopped.wait().await, RunState::Stopped);
    stopped.stop();
    let status = stopped.status();
    assert_eq!((status.state, status.users, status.error), (RunState::Stopped, 0, None));
    assert!(status.windows_closed >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_its_start_time() {
    let (url, seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.05}\n    tasks: [{name: a, requests: [{method: GET, path: /later}]}]\n\
         shape: {stages: [{end: 0.5, users: 2, spawn_rate: 1000}]}\n",
    );
    let start_at = SystemTime::now() + Duration::from_millis(800);
    let mut scheduled = plan(s.clone(), &url);
    scheduled.start_at = Some(start_at);
    let handle = RunHandle::start(scheduled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = handle.status();
    assert_eq!(
        (status.state, status.users, status.started_at_unix_ms, status.elapsed_s),
        (RunState::Scheduled, 0, None, 0.0)
    );
    assert!(seen.lock().unwrap().requests.is_empty());
    assert_eq!(handle.wait().await, RunState::Finished);
    let start_ms = start_at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
    let started = handle.status().started_at_unix_ms.unwrap();
    assert!(started >= start_ms && started < start_ms + 300, "started at {started}, planned {start_ms}");
    assert!(seen.lock().unwrap().requests["GET /later"] > 2);
    let collector = handle.collector();
    assert_eq!(collector.lock().unwrap().history()[0].start_unix_s, start_ms / 1000, "windows start at the start time");

    // Stopped while scheduled: it never starts.
    let mut scheduled = plan(s, &url);
    scheduled.start_at = Some(SystemTime::now() + Duration::from_secs(30));
    let handle = RunHandle::start(scheduled);
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.stop();
    assert_eq!(handle.wait().await, RunState::Stopped);
    assert_eq!(handle.status().started_at_unix_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_capped_and_bad_shares_fail() {
    let (url, _seen) = serve().await;
    let s = scenario(
        "users:\n  - name: u\n    wait: {constant: 0.1}\n    tasks: [{name: a, requests: [{method: GET, path: /m}]}]\n\
         shape: {stages: [{end: 0.8, users: 10, spawn_rate: 1000}]}\n",
    );
    let mut capped = plan(s.clone(), &url);
    capped.max_users = 3;
    let handle = RunHandle::start(capped);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!((handle.status().users, handle.status().target_users), (3, 3));
    handle.wait().await;

    let mut bad = plan(s, &url);
    bad.agent_index = 2;
    bad.agent_count = 2;
    let handle = RunHandle::start(bad);
    assert_eq!(handle.wait().await, RunState::Failed);
    assert!(handle.status().error.unwrap().contains("agent_index 2 must be below agent_count 2"));
}
