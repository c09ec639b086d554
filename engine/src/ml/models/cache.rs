//! The process-wide cache of loaded models: each version is read and verified once per
//! process, and the cache holds at most [`MODEL_CACHE_BYTES`] of artifacts, dropping the
//! least recently used versions first. A dropped version that a session is still scoring
//! with stays alive until that session ends; the next use loads it again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use super::registry::{LoadedModel, ModelRef, Registry};
use crate::error::Result;

/// The artifact bytes the process keeps loaded (1 GiB).
pub const MODEL_CACHE_BYTES: u64 = 1 << 30;

/// A model version: name, version and artifact SHA-256.
pub type ModelKey = (String, u64, String);

/// The process's models.
pub fn models() -> &'static Mutex<Lru<ModelKey, Arc<LoadedModel>>> {
    static CACHE: OnceLock<Mutex<Lru<ModelKey, Arc<LoadedModel>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Lru::new(MODEL_CACHE_BYTES)))
}

/// The version `reference` names now (aliases are read each time), loaded through the
/// process's cache.
pub async fn load(registry: &Registry, reference: &ModelRef) -> Result<Arc<LoadedModel>> {
    let manifest = registry.resolve(reference).await?;
    let key = (
        manifest.name.clone(),
        manifest.version,
        manifest.artifact_sha256.clone(),
    );
    if let Some(loaded) = cached(&key) {
        return Ok(loaded);
    }
    let bytes = manifest.artifact_bytes;
    let loaded = Arc::new(registry.load(manifest).await?);
    models()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, loaded.clone(), bytes);
    Ok(loaded)
}

/// The model version `key` names if the process has it loaded: no read of the registry.
pub fn cached(key: &ModelKey) -> Option<Arc<LoadedModel>> {
    models().lock().unwrap_or_else(|e| e.into_inner()).get(key)
}

/// A map bounded by the sizes of its values, evicting the least recently used.
#[derive(Debug)]
pub struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    budget: u64,
    bytes: u64,
    clock: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    bytes: u64,
    used: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// An empty cache holding at most `budget` bytes (and always the newest entry, even
    /// when it alone is larger).
    pub fn new(budget: u64) -> Self {
        Self {
            entries: HashMap::new(),
            budget,
            bytes: 0,
            clock: 0,
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.used = self.clock;
        Some(entry.value.clone())
    }

    /// Keeps `value` (of `bytes`) under `key`, then drops the least recently used entries
    /// until the cache fits its budget.
    pub fn insert(&mut self, key: K, value: V, bytes: u64) {
        self.clock += 1;
        let entry = Entry {
            value,
            bytes,
            used: self.clock,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        while self.bytes > self.budget && self.entries.len() > 1 {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(dropped) = self.entries.remove(&oldest) {
                self.bytes -= dropped.bytes;
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entries_go_first_when_the_budget_is_passed() {
        let mut cache = Lru::new(100);
        cache.insert("a", 1, 40);
        cache.insert("b", 2, 40);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.insert("c", 3, 40);
        assert_eq!(cache.get(&"b"), None, "b was used least recently");
        assert_eq!((cache.get(&"a"), cache.get(&"c")), (Some(1), Some(3)));
        assert_eq!(cache.bytes(), 80);
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_kept_alone() {
        let mut cache = Lru::new(100);
        cache.insert("small", 1, 10);
        cache.insert("huge", 2, 500);
        assert_eq!(cache.get(&"small"), None);
        assert_eq!(cache.get(&"huge"), Some(2));
        cache.insert("huge", 3, 20);
        assert_eq!((cache.get(&"huge"), cache.bytes()), (Some(3), 20));
    }
}
