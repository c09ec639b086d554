//! The model versions the HTTP API scores with. `name:version` always means that
//! version; `name` and `name@alias` are looked up again once `[serve.http]
//! model_refresh` has passed, so a promotion takes effect within that time. A request
//! holds the version it started with until it ends, so none fails or mixes versions
//! while another is promoted. Artifacts come through the process's bounded model cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakescore_engine::Lakehouse;
use lakescore_engine::error::Error as EngineError;
use lakescore_engine::ml::models::cache;
use lakescore_engine::ml::models::registry::{LoadedModel, ModelRef, Registry, VersionSelector};
use parking_lot::Mutex;

use super::errors::ApiError;
use super::metrics::Metrics;

/// The versions references resolved to, and when.
pub struct LiveModels {
    registry: Registry,
    refresh: Duration,
    resolved: Mutex<HashMap<String, (Instant, Arc<LoadedModel>)>>,
    metrics: Arc<Metrics>,
}

impl LiveModels {
    /// Models of `lakehouse`'s registry, aliases looked up again every `refresh`.
    pub fn new(lakehouse: Arc<Lakehouse>, refresh: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            registry: Registry::new(lakehouse),
            refresh,
            resolved: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The version `reference` (`name`, `name@alias`, `name:version`) names now.
    pub async fn get(&self, reference: &ModelRef) -> Result<Arc<LoadedModel>, ApiError> {
        let key = reference.to_string();
        if let Some((at, model)) = self.resolved.lock().get(&key) {
            let fixed = matches!(reference.selector, VersionSelector::Number(_));
            if fixed || at.elapsed() < self.refresh {
                return Ok(model.clone());
            }
        }
        let loaded = cache::load(&self.registry, reference)
            .await
            .map_err(|error| match error {
                EngineError::Usage(message) => ApiError::NotFound(message),
                other => {
                    tracing::error!("could not load model {reference}: {other}");
                    ApiError::Unavailable(format!(
                        "model {reference} could not be loaded; the server log says why"
                    ))
                }
            })?;
        let previous = self
            .resolved
            .lock()
            .insert(key, (Instant::now(), loaded.clone()));
        if let Some((_, previous)) = previous
            && previous.manifest.version != loaded.manifest.version
        {
            tracing::info!(
                "{reference} now scores with version {} (was {})",
                loaded.manifest.version,
                previous.manifest.version
            );
            self.metrics.reload(&loaded.manifest.name);
        }
        Ok(loaded)
    }

    /// Loads the champion of every registered model (those without one are skipped), so
    /// the first requests do not wait; returns the versions loaded, `name:version`.
    pub async fn preload(&self) -> Vec<String> {
        let names = match self.registry.model_names().await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!("could not list the registered models: {error}");
                return Vec::new();
            }
        };
        let mut loaded = Vec::new();
        for name in names {
            let reference = ModelRef {
                name,
                selector: VersionSelector::Alias(String::from("champion")),
            };
            match self.get(&reference).await {
                Ok(model) => loaded.push(format!(
                    "{}:{}",
                    model.manifest.name, model.manifest.version
                )),
                Err(error) => tracing::info!("{reference} not loaded: {error}"),
            }
        }
        loaded
    }
}
