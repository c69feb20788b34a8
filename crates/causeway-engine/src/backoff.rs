//! Retry delay: `min(initial * 2^(retry-1), max)`, scaled by a jitter in [0.8, 1.2] so many
//! clients retrying together spread out.

use std::time::Duration;

pub fn delay(retry: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    base.mul_f64(jitter.clamp(0.8, 1.2))
}

pub fn jitter() -> f64 {
    0.8 + fastrand::f64() * 0.4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let i = Duration::from_millis(100);
        let m = Duration::from_millis(1000);
        assert_eq!(delay(1, i, m, 1.0), Duration::from_millis(100));
        assert_eq!(delay(2, i, m, 1.0), Duration::from_millis(200));
        assert_eq!(delay(4, i, m, 1.0), Duration::from_millis(800));
        assert_eq!(delay(5, i, m, 1.0), Duration::from_millis(1000));
        assert_eq!(delay(50, i, m, 1.2), Duration::from_millis(1200));
        assert_eq!(delay(1, i, m, 0.8), Duration::from_millis(80));
    }
}
