//! One emulated pod: its identity, when it was created and became ready, and the CPU it has used.

#[derive(Debug, Clone)]
pub struct Pod {
    pub id: u64,
    pub name: String,
    pub created_s: f64,
    pub ready_s: f64,
    /// CPU seconds used so far (container_cpu_usage_seconds_total).
    pub cpu_seconds: f64,
}

impl Pod {
    pub fn is_ready(&self, now_s: f64) -> bool {
        self.ready_s <= now_s
    }
}
