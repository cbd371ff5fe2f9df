//! Per-service admission: at most `capacity` calls (ready pods × per-pod concurrency) hold a pod at once; the rest
//! wait in one FIFO queue (the M/M/c queue of the simulator) until a pod frees up or their request's deadline
//! passes. With no ready pod a call fails at once, as with no endpoints behind a Kubernetes Service.
//!
//! Capacity changes as pods become ready or go away. A shrink never interrupts calls in progress: it only stops
//! admitting until they finish (a terminating pod drains its requests).
//!
//! The CPU a call used is counted as it leaves, under the lock already taken, so the hot path touches no other
//! shared counter.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

/// Why a call was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No ready pod (503).
    NoEndpoints,
    /// The request's deadline passed while it waited (504).
    Timeout,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoEndpoints => 503,
            Refusal::Timeout => 504,
        }
    }

    /// The text Envoy answers with, as a client of an Istio mesh sees it.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoEndpoints => "no healthy upstream",
            Refusal::Timeout => "upstream request timeout",
        }
    }
}

#[derive(Default)]
struct State {
    capacity: u32,
    in_use: u32,
    /// CPU time served, in nanoseconds.
    busy_cpu_ns: u64,
    /// Each waiter gets `true` when admitted, `false` when the service lost all its pods.
    waiters: VecDeque<oneshot::Sender<bool>>,
}

impl State {
    fn admit_waiters(&mut self) {
        while self.in_use < self.capacity {
            let Some(waiter) = self.waiters.pop_front() else { break };
            // A waiter that gave up has dropped its receiver: skip it.
            if waiter.send(true).is_ok() {
                self.in_use += 1;
            }
        }
    }
}

#[derive(Default)]
pub struct Admission {
    state: Mutex<State>,
}

/// A held slot; [`Permit::finish`] (or dropping it, when the call was cut off) lets the next waiter in.
pub struct Permit<'a> {
    admission: &'a Admission,
    cpu_ns: u64,
}

impl Permit<'_> {
    /// Leaves the pod, having used `cpu_ns` of CPU.
    pub fn finish(mut self, cpu_ns: u64) {
        self.cpu_ns = cpu_ns;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.admission.release(self.cpu_ns);
    }
}

/// A place in the queue. Dropped without being admitted (timeout, or the client went away), it gives back a slot
/// granted in the meantime, so no slot leaks.
struct Waiting<'a> {
    admission: &'a Admission,
    receiver: oneshot::Receiver<bool>,
    settled: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.receiver.close();
        if let Ok(true) = self.receiver.try_recv() {
            self.admission.release(0);
        }
    }
}

impl Admission {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot until `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<Permit<'_>, Refusal> {
        let receiver = {
            let mut state = self.lock();
            if state.capacity == 0 {
                return Err(Refusal::NoEndpoints);
            }
            if state.in_use < state.capacity && state.waiters.is_empty() {
                state.in_use += 1;
                return Ok(Permit { admission: self, cpu_ns: 0 });
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.push_back(sender);
            receiver
        };
        let mut waiting = Waiting { admission: self, receiver, settled: false };
        tokio::select! {
            answer = &mut waiting.receiver => {
                waiting.settled = true;
                match answer {
                    Ok(true) => Ok(Permit { admission: self, cpu_ns: 0 }),
                    Ok(false) | Err(_) => Err(Refusal::NoEndpoints),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => Err(Refusal::Timeout),
        }
    }

    fn release(&self, cpu_ns: u64) {
        let mut state = self.lock();
        state.in_use = state.in_use.saturating_sub(1);
        state.busy_cpu_ns += cpu_ns;
        state.admit_waiters();
    }

    /// Sets the slots (ready pods × concurrency). At zero every waiter fails at once.
    pub fn set_capacity(&self, capacity: u32) {
        let mut state = self.lock();
        state.capacity = capacity;
        if capacity == 0 {
            for waiter in state.waiters.drain(..) {
                let _ = waiter.send(false);
            }
        } else {
            state.admit_waiters();
        }
    }

    /// (slots in use, calls waiting)
    pub fn load(&self) -> (u32, usize) {
        let state = self.lock();
        (state.in_use, state.waiters.len())
    }

    /// CPU time served so far, in nanoseconds.
    pub fn busy_cpu_ns(&self) -> u64 {
        self.lock().busy_cpu_ns
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn admits_up_to_capacity_then_queues_in_order() {
        let admission = Arc::new(Admission::default());
        let far = Instant::now() + Duration::from_secs(30);
        assert_eq!(admission.acquire(far).await.err(), Some(Refusal::NoEndpoints));
        admission.set_capacity(1);
        let first = admission.acquire(far).await.unwrap();
        let queued = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.acquire(far).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(admission.load(), (1, 1));
        first.finish(1_500);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert_eq!(admission.load(), (0, 0));
        assert_eq!(admission.busy_cpu_ns(), 1_500);
    }

    #[tokio::test]
    async fn a_timed_out_or_abandoned_waiter_leaks_no_slot() {
        let admission = Admission::default();
        admission.set_capacity(1);
        let held = admission.acquire(Instant::now() + Duration::from_secs(30)).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(admission.acquire(soon).await.err(), Some(Refusal::Timeout));
        // A waiter dropped mid-wait (the client closed its connection).
        let abandoned = admission.acquire(Instant::now() + Duration::from_secs(30));
        let _ = tokio::time::timeout(Duration::from_millis(20), abandoned).await;
        drop(held);
        assert_eq!(admission.load(), (0, 0));
        let again = admission.acquire(Instant::now() + Duration::from_secs(1)).await;
        assert!(again.is_ok());
    }

    #[tokio::test]
    async fn shrinking_drains_and_losing_every_pod_fails_waiters() {
        let admission = Arc::new(Admission::default());
        admission.set_capacity(2);
        let far = Instant::now() + Duration::from_secs(30);
        let a = admission.acquire(far).await.unwrap();
        let b = admission.acquire(far).await.unwrap();
        admission.set_capacity(1);
        drop(a);
        // Still one in use, at the new capacity: the next caller waits.
        assert_eq!(admission.load(), (1, 0));
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.acquire(far).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        admission.set_capacity(0);
        assert_eq!(waiter.await.unwrap(), Err(Refusal::NoEndpoints));
        drop(b);
        assert_eq!(admission.load(), (0, 0));
    }
}
