//! Who each user is: its global index (spawn order over all agents of a run), the agent it runs on, its user class
//! and its random stream. Every agent computes the same answers on its own, so several agents split a run exactly.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Users `0..global` of which those with `i % count == index` run on agent `index`: how many that is.
pub fn local_share(global: u64, index: u32, count: u32) -> u64 {
    let (index, count) = (index as u64, count.max(1) as u64);
    if global > index { (global - index).div_ceil(count) } else { 0 }
}

/// The global index of this agent's `slot`-th user.
pub fn global_index(slot: u64, index: u32, count: u32) -> u64 {
    slot * count.max(1) as u64 + index as u64
}

/// User classes by global index, in proportion to their weights in every prefix (a smooth weighted round robin,
/// as Locust 2 distributes users): the first n users are always as close to the weights as n allows.
pub struct ClassTable {
    weights: Vec<f64>,
    total: f64,
    assigned: Vec<f64>,
    classes: Vec<u32>,
}

impl ClassTable {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> ClassTable {
        let weights: Vec<f64> = weights.into_iter().map(f64::from).collect();
        ClassTable { total: weights.iter().sum(), assigned: vec![0.0; weights.len()], weights, classes: Vec::new() }
    }

    /// The class of the user with global index `i`.
    pub fn class_of(&mut self, i: u64) -> usize {
        while self.classes.len() as u64 <= i {
            let n = self.classes.len() as f64 + 1.0;
            // The class furthest below its share; ties go to the first.
            let mut best = 0;
            let mut best_deficit = f64::NEG_INFINITY;
            for (c, weight) in self.weights.iter().enumerate() {
                let deficit = n * weight / self.total - self.assigned[c];
                if deficit > best_deficit + 1e-9 {
                    best = c;
                    best_deficit = deficit;
                }
            }
            self.assigned[best] += 1.0;
            self.classes.push(best as u32);
        }
        self.classes[i as usize] as usize
    }
}

/// The random stream of the user with global index `i`, started for the `generation`-th time (a user stopped by a
/// falling user count and started again later does not replay its earlier choices).
pub fn user_rng(seed: u64, i: u64, generation: u32) -> ChaCha8Rng {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.wrapping_add(u64::from(generation).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    rng.set_stream(i);
    rng
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn agents_split_users_exactly() {
        for global in 0..50u64 {
            let total: u64 = (0..3).map(|i| local_share(global, i, 3)).sum();
            assert_eq!(total, global);
            for agent in 0..3 {
                let mine = (0..global).filter(|i| i % 3 == agent as u64).count() as u64;
                assert_eq!(local_share(global, agent, 3), mine);
                if mine > 0 {
                    assert_eq!(global_index(mine - 1, agent, 3) % 3, agent as u64);
                }
            }
        }
        assert_eq!((local_share(5, 0, 2), local_share(5, 1, 2)), (3, 2));
    }

    #[test]
    fn classes_are_proportional_in_every_prefix() {
        let mut table = ClassTable::new([3, 1]);
        let picks: Vec<usize> = (0..8).map(|i| table.class_of(i)).collect();
        assert_eq!(picks.iter().filter(|&&c| c == 0).count(), 6);
        for n in 1..=8 {
            let ones = picks[..n].iter().filter(|&&c| c == 1).count() as f64;
            assert!((ones - n as f64 / 4.0).abs() <= 1.0, "{picks:?}");
        }
        let mut table = ClassTable::new([1, 1, 1]);
        assert_eq!((0..6).map(|i| table.class_of(i)).collect::<Vec<_>>(), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn users_have_their_own_streams() {
        let draw = |seed, i, generation| user_rng(seed, i, generation).r#gen::<u64>();
        assert_eq!(draw(1, 5, 0), draw(1, 5, 0));
        assert_ne!(draw(1, 5, 0), draw(1, 6, 0));
        assert_ne!(draw(1, 5, 0), draw(2, 5, 0));
        assert_ne!(draw(1, 5, 0), draw(1, 5, 1));
    }
}
