//! Which instances go first when a schedule period cannot ship them all: the most lag first, so
//! that none starves. The lag of each instance as last measured is kept in one small index
//! object (`<prefix>/_state/fleet-lag.json`); an instance's lag is estimated to have grown by
//! the time since it was measured, and one never measured goes first of all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The lag of each instance, as last measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagIndex {
    pub version: u32,
    pub instances: BTreeMap<String, Measured>,
}

/// A lag (seconds) and when it was measured (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measured {
    pub lag_seconds: f64,
    pub at_ms: i64,
}

pub const INDEX_VERSION: u32 = 1;

impl LagIndex {
    /// The lag estimated at `now_ms`: as measured, grown by the time since (bytes written since
    /// the measure are at most that old); `None` when never measured.
    pub fn estimate(&self, instance: &str, now_ms: i64) -> Option<f64> {
        self.instances
            .get(instance)
            .map(|m| m.lag_seconds + (now_ms - m.at_ms).max(0) as f64 / 1000.0)
    }

    /// Records the lags just measured (instance, lag, when); an older measure never replaces a
    /// newer one. Instances no longer selected are dropped, so the index stays as small as the
    /// fleet.
    pub fn update(&mut self, measured: &[(String, f64, i64)], selected: Option<&[String]>) {
        self.version = INDEX_VERSION;
        for (id, lag, at) in measured {
            let newer = self.instances.get(id).is_none_or(|m| m.at_ms <= *at);
            if newer {
                self.instances.insert(
                    id.clone(),
                    Measured {
                        lag_seconds: *lag,
                        at_ms: *at,
                    },
                );
            }
        }
        if let Some(selected) = selected {
            self.instances.retain(|id, _| selected.binary_search(id).is_ok());
        }
    }
}

/// The shipping order of `selected`: never measured first, then by estimated lag, largest first;
/// ties by identifier (a stable order).
pub fn order(mut selected: Vec<String>, index: &LagIndex, now_ms: i64) -> Vec<String> {
    let key = |id: &String| index.estimate(id, now_ms).unwrap_or(f64::INFINITY);
    selected.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.cmp(b)));
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn index(entries: &[(&str, f64, i64)]) -> LagIndex {
        let mut i = LagIndex::default();
        let m: Vec<_> = entries
            .iter()
            .map(|(id, l, at)| ((*id).to_owned(), *l, *at))
            .collect();
        i.update(&m, None);
        i
    }

    #[test]
    fn the_most_lag_goes_first_and_the_never_measured_before_all() {
        // c: 100 s behind when measured; a: caught up but measured 10 minutes ago; b: caught up
        // just now; d: never measured.
        let i = index(&[("a", 0.0, 0), ("b", 0.0, 600_000), ("c", 100.0, 600_000)]);
        let order = order(ids(&["a", "b", "c", "d"]), &i, 600_000);
        assert_eq!(order, ids(&["d", "a", "c", "b"]));
        assert_eq!(i.estimate("a", 600_000), Some(600.0));
        assert_eq!(i.estimate("d", 600_000), None);
    }

    #[test]
    fn no_instance_starves_when_each_period_ships_only_some() {
        // 10 instances, 3 shipped per period, each shipped one caught up: every instance is
        // shipped within ceil(10 / 3) periods, again and again.
        let fleet: Vec<String> = (0..10).map(|i| format!("db-{i}")).collect();
        let mut i = LagIndex::default();
        let mut last_shipped: BTreeMap<String, usize> = BTreeMap::new();
        for period in 0..40 {
            let now = period as i64 * 300_000;
            let shipped: Vec<_> = order(fleet.clone(), &i, now).into_iter().take(3).collect();
            let measured: Vec<_> = shipped.iter().map(|id| (id.clone(), 0.0, now)).collect();
            i.update(&measured, Some(&fleet));
            for id in shipped {
                if let Some(before) = last_shipped.insert(id, period) {
                    assert!(period - before <= 4, "waited {} periods", period - before);
                }
            }
        }
        assert_eq!(last_shipped.len(), 10);
    }

    #[test]
    fn an_older_measure_never_replaces_a_newer_one_and_unselected_instances_are_dropped() {
        let mut i = index(&[("a", 5.0, 100)]);
        i.update(&[("a".into(), 50.0, 50), ("b".into(), 1.0, 10)], None);
        assert_eq!(i.instances["a"].lag_seconds, 5.0);
        i.update(&[], Some(&ids(&["b"])));
        assert_eq!(i.instances.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(i.version, INDEX_VERSION);
    }
}
