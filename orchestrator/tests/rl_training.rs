//! Host-side training pieces: GAE, advantage normalization, masked categoricals, gradient clipping, Adam.

use orchestrator::rl::distributions::{MaskedCategorical, per_service};
use orchestrator::rl::optim::{Adam, clip_global_norm};
use orchestrator::rl::returns::{gae, normalize};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

#[test]
fn gae_matches_hand_computed_values_and_stops_at_episode_ends() {
    // γ = 0.9, λ = 0.8; the episode ends with step 1, a new one starts at step 2 and is cut off after it.
    // t=2: δ = 3 + 0.9·2.0 − 1.5 = 3.3, A = 3.3
    // t=1: δ = 2 − 1.0 = 1.0 (done: no bootstrap), A = 1.0
    // t=0: δ = 1 + 0.9·1.0 − 0.5 = 1.4, A = 1.4 + 0.9·0.8·1.0 = 2.12
    let (advantages, returns) = gae(&[1.0, 2.0, 3.0], &[0.5, 1.0, 1.5], &[false, true, false], 2.0, 0.9, 0.8);
    assert!(close(&advantages, &[2.12, 1.0, 3.3]), "{advantages:?}");
    assert!(close(&returns, &[2.62, 2.0, 4.8]), "{returns:?}");
    // λ = 1 and γ = 1 without dones: advantages are reward-to-go plus the bootstrap, minus the value.
    let (advantages, _) = gae(&[1.0, 1.0], &[0.0, 0.0], &[false, false], 5.0, 1.0, 1.0);
    assert!(close(&advantages, &[7.0, 6.0]));
}

#[test]
fn advantage_normalization_gives_zero_mean_unit_std() {
    let mut a = vec![1.0, 2.0, 3.0, 4.0];
    normalize(&mut a);
    let mean: f32 = a.iter().sum::<f32>() / 4.0;
    let std = (a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 3.0).sqrt();
    assert!(mean.abs() < 1e-6 && (std - 1.0).abs() < 1e-5);
}

#[test]
fn masked_actions_have_zero_probability_and_are_never_sampled() {
    let logits = [1.0, 2.0, 3.0, 4.0, 5.0];
    let d = MaskedCategorical::new(&logits, &[false, false, true, true, true]);
    let z = 1.0 + 1f32.exp() + 2f32.exp();
    let expected = [0.0, 0.0, 1.0 / z, 1f32.exp() / z, 2f32.exp() / z];
    assert!(close(&d.probs(), &expected));
    let entropy: f32 = expected[2..].iter().map(|p| -p * p.ln()).sum();
    assert!((d.entropy() - entropy).abs() < 1e-5);
    assert_eq!(d.log_prob(0), f32::NEG_INFINITY);
    assert_eq!(d.mode(), 4);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut counts = [0u32; 5];
    for _ in 0..20_000 {
        counts[d.sample(&mut rng)] += 1;
    }
    assert_eq!(&counts[..2], &[0, 0]);
    for a in 2..5 {
        assert!((counts[a] as f32 / 20_000.0 - expected[a]).abs() < 0.02, "{counts:?}");
    }
    // Per service: two services of five actions, the second only allowed to stay.
    let ds = per_service(&[0.0; 10], &[true, true, true, true, true, false, false, true, false, false], 5);
    assert!(close(&ds[0].probs(), &[0.2; 5]));
    assert!(close(&ds[1].probs(), &[0.0, 0.0, 1.0, 0.0, 0.0]));
    assert_eq!(ds[1].entropy(), 0.0);
}

#[test]
fn global_norm_clipping_scales_all_gradients_together() {
    let mut g = vec![vec![3.0, 0.0], vec![4.0]];
    let norm = clip_global_norm(&mut g, 1.0);
    assert!((norm - 5.0).abs() < 1e-6);
    assert!(close(&g.concat(), &[0.6, 0.0, 0.8]));
    let mut small = vec![vec![0.3], vec![0.4]];
    clip_global_norm(&mut small, 1.0);
    assert_eq!(small, vec![vec![0.3], vec![0.4]], "under the limit nothing changes");
}

#[test]
fn adam_first_step_moves_each_parameter_by_about_the_learning_rate() {
    let mut params = vec![vec![1.0, 1.0], vec![0.0]];
    let mut adam = Adam::new(&[2, 1], 0.1);
    assert_eq!(adam.eps, 1e-5);
    adam.update(&mut params, &[vec![2.0, -0.5], vec![0.0]]);
    assert!(close(&params.concat(), &[0.9, 1.1, 0.0]), "{params:?}");
}
