//! A client-side token bucket keeping the shipper within RDS's shared API budget (about 300
//! requests burst and 12 per second per account and region).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: f64,
}

impl TokenBucket {
    /// `per_second` sustained, `burst` at most; starts full. `now` is in seconds.
    pub fn new(per_second: f64, burst: f64, now: f64) -> Self {
        let per_second = per_second.max(0.01);
        let capacity = burst.max(1.0);
        Self {
            capacity,
            per_second,
            tokens: capacity,
            last: now,
        }
    }

    /// The limit: (requests per second sustained, burst).
    pub fn limit(&self) -> (f64, f64) {
        (self.per_second, self.capacity)
    }

    /// Takes a token, or says how long to wait for one.
    pub fn take(&mut self, now: f64) -> Result<(), Duration> {
        let elapsed = (now - self.last).max(0.0);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(10.0, 5.0, 0.0);
        for _ in 0..5 {
            assert!(b.take(0.0).is_ok());
        }
        let wait = b.take(0.0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9);
        assert!(b.take(0.1).is_ok());
        // Over 10 simulated seconds, at most burst + rate × time requests pass.
        let mut b = TokenBucket::new(12.0, 300.0, 0.0);
        let mut passed = 0;
        let mut t = 0.0;
        while t < 10.0 {
            if b.take(t).is_ok() {
                passed += 1;
            }
            t += 0.001;
        }
        assert!(passed <= 300 + 120 + 1, "{passed}");
        assert!(passed >= 300 + 119, "{passed}");
    }
}
