//! Small numeric helpers the decoders share: sigmoid, softmax, argmax, clamped ramps.

/// The logistic function; `x` is clipped to +-100 first (as MediaPipe does) so huge logits
/// stay finite.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-100.0, 100.0)).exp())
}

/// Turns logits into probabilities, in place; stable for large logits.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    if sum > 0.0 {
        values.iter_mut().for_each(|v| *v /= sum);
    }
}

/// Index and value of the largest value (the first of equals); `None` when empty. Takes an
/// iterator so that strided data (one class plane after the other) needs no copy.
pub fn argmax(values: impl IntoIterator<Item = f32>) -> Option<(usize, f32)> {
    values
        .into_iter()
        .enumerate()
        .fold(None, |best, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
}

/// 0 below `low`, 1 above `high`, linear between.
pub fn ramp(x: f32, low: f32, high: f32) -> f32 {
    ((x - low) / (high - low)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let mut values = [1.0, 2.0, 3.0];
        softmax(&mut values);
        assert!((values.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((values[2] - 0.665_240_9).abs() < 1e-6, "{values:?}");
        let mut huge = [1000.0, 1000.0];
        softmax(&mut huge);
        assert_eq!(huge, [0.5, 0.5]);
    }

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax([0.1, 0.7, 0.7, 0.2]), Some((1, 0.7)));
        assert_eq!(argmax([]), None);
        assert_eq!(argmax([-3.0]), Some((0, -3.0)));
    }

    #[test]
    fn sigmoid_and_ramp() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(1e9) <= 1.0 && sigmoid(-1e9) >= 0.0);
        assert!((sigmoid(2.0) - 0.880_797).abs() < 1e-6);
        assert_eq!(ramp(0.2, 0.3, 0.7), 0.0);
        assert_eq!(ramp(0.5, 0.3, 0.7), 0.5);
        assert_eq!(ramp(0.9, 0.3, 0.7), 1.0);
    }
}
