//! Request outcomes on their way to the run's [`Collector`].
//!
//! Users never touch the collector (its lock would be the hot spot of a fast run): they push compact records into
//! one of a few sharded buffers, each behind a lock held only for a push or a swap. The run's driver moves them
//! into the collector several times a second and, since each record carries its completion time, puts every
//! request in the one-second window it completed in even when the driver itself wakes late.

use std::sync::Mutex;

use crate::stats::Collector;

/// Buffers; a user always uses the same one (its global index modulo this).
const SHARDS: usize = 16;

/// One completed request.
pub struct Record {
    /// Completion time, in µs since the run started.
    pub done_us: u64,
    pub latency_us: u64,
    pub bytes: u64,
    /// Index into the compiled scenario's stats keys.
    pub stat: u32,
    pub error: Option<Box<str>>,
}

pub struct Recorder {
    shards: Vec<Mutex<Vec<Record>>>,
    /// `(method, name)` by [`Record::stat`].
    keys: Vec<(String, String)>,
}

impl Recorder {
    pub fn new(keys: Vec<(String, String)>) -> Recorder {
        Recorder { shards: (0..SHARDS).map(|_| Mutex::new(Vec::with_capacity(256))).collect(), keys }
    }

    pub fn shard_of(global_user: u64) -> usize {
        (global_user % SHARDS as u64) as usize
    }

    pub fn push(&self, shard: usize, record: Record) {
        self.shards[shard].lock().unwrap_or_else(|e| e.into_inner()).push(record);
    }

    /// Takes every buffered record, appending to `out`.
    pub fn take(&self, out: &mut Vec<Record>, spare: &mut Vec<Record>) {
        for shard in &self.shards {
            {
                let mut buffer = shard.lock().unwrap_or_else(|e| e.into_inner());
                if buffer.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buffer, spare);
            }
            out.append(spare);
        }
    }

    /// Records into `collector` the records of `batch` (sorted by completion time) that completed before
    /// `until_us`, removing them from the batch.
    pub fn record_until(&self, batch: &mut Vec<Record>, until_us: u64, collector: &mut Collector) {
        let end = batch.partition_point(|r| r.done_us < until_us);
        for record in batch.drain(..end) {
            let (method, name) = &self.keys[record.stat as usize];
            collector.record(method, name, record.latency_us, record.bytes, record.error.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_the_window_they_completed_in() {
        let recorder = Recorder::new(vec![("GET".into(), "/a".into())]);
        for (shard, done_us) in [(0, 1_500_000), (3, 200_000), (3, 999_999), (5, 1_000_000)] {
            recorder.push(shard, Record { done_us, latency_us: 10, bytes: 1, stat: 0, error: None });
        }
        let (mut batch, mut spare) = (Vec::new(), Vec::new());
        recorder.take(&mut batch, &mut spare);
        batch.sort_by_key(|r| r.done_us);
        let mut collector = Collector::new(0);
        recorder.record_until(&mut batch, 1_000_000, &mut collector);
        assert_eq!(collector.close_window(1).total.summary.requests, 2);
        recorder.record_until(&mut batch, u64::MAX, &mut collector);
        assert_eq!(collector.close_window(1).total.summary.requests, 2);
        assert!(batch.is_empty());
    }
}
