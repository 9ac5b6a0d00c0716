//! Which due entries a round replays: each at most once per `retry_after`, so an entry whose
//! refresh was refused (budget spent, tenant no longer opted in) is not retried every round.
//! Time is an input; the map is bounded by forgetting attempts older than `retry_after`.
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Attempts {
    /// (namespace, key) → when it was last tried (Unix ms).
    tried: HashMap<(String, String), u64>,
}

impl Attempts {
    /// The entries of `due` not tried within `retry_after`, marked as tried now.
    pub fn choose(&mut self, due: Vec<(String, String)>, now_ms: u64, retry_after: Duration) -> Vec<(String, String)> {
        let retry_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        self.tried.retain(|_, at| now_ms.saturating_sub(*at) < retry_ms);
        let mut chosen = Vec::new();
        for entry in due {
            if self.tried.contains_key(&entry) {
                continue;
            }
            self.tried.insert(entry.clone(), now_ms);
            chosen.push(entry);
        }
        chosen
    }

    /// Not tried after all: an entry without a record yet (its record is written in the
    /// background, just after the entry) is looked at again next round.
    pub fn forget(&mut self, entry: &(String, String)) {
        self.tried.remove(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(keys: &[&str]) -> Vec<(String, String)> {
        keys.iter().map(|k| ("ns".to_string(), k.to_string())).collect()
    }

    #[test]
    fn each_entry_once_per_retry_period() {
        let mut attempts = Attempts::default();
        let retry = Duration::from_secs(60);
        assert_eq!(attempts.choose(due(&["a", "b"]), 0, retry), due(&["a", "b"]));
        assert_eq!(attempts.choose(due(&["a", "b", "c"]), 1_000, retry), due(&["c"]));
        assert_eq!(attempts.choose(due(&["a"]), 59_999, retry), due(&[]));
        assert_eq!(attempts.choose(due(&["a", "a"]), 60_000, retry), due(&["a"]), "due again, once");
        assert_eq!(attempts.tried.len(), 2, "b (tried at 0) is forgotten; a (again) and c are kept");
    }
}
