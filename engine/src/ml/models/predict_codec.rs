//! `predict` on a cluster: the models a statement resolved travel with the plan as
//! `name:version` and artifact SHA-256 (never as an alias, so a promotion during a job
//! cannot change which version a task scores with). The scheduler and each executor load
//! those versions from the lakehouse through the process's model cache and refuse an
//! artifact whose SHA-256 differs.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::{exec_datafusion_err, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::ScalarUDF;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::{Handle, RuntimeFlavor};

use super::cache;
use super::loaded::{PREDICT, SessionModels};
use super::predict::Predict;
use super::registry::{ModelRef, Registry, VersionSelector};
use crate::sql::cluster::FunctionCodec;
use crate::storage::lakehouse::Lakehouse;

/// Sends and receives `predict` with its resolved models.
#[derive(Debug)]
pub struct PredictCodec {
    lakehouse: Arc<Lakehouse>,
}

impl PredictCodec {
    /// A codec that loads received models from `lakehouse`.
    pub fn new(lakehouse: Arc<Lakehouse>) -> Self {
        Self { lakehouse }
    }
}

/// One resolved model as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SentModel {
    name: String,
    version: u64,
    sha256: String,
}

/// `predict`'s state as it travels.
#[derive(Debug, Serialize, Deserialize)]
struct SentPredict {
    top_features: usize,
    /// Reference as written in SQL → the version it resolved to.
    models: BTreeMap<String, SentModel>,
}

impl FunctionCodec for PredictCodec {
    fn name(&self) -> &str {
        PREDICT
    }

    fn encode(&self, function: &ScalarUDF) -> DfResult<Value> {
        let Some(predict) = function.inner().downcast_ref::<Predict>() else {
            return exec_err!("{PREDICT}: a function of another kind has this name");
        };
        let models = predict
            .models()
            .entries()
            .into_iter()
            .map(|(reference, loaded)| {
                let manifest = &loaded.manifest;
                let sent = SentModel {
                    name: manifest.name.clone(),
                    version: manifest.version,
                    sha256: manifest.artifact_sha256.clone(),
                };
                (reference, sent)
            })
            .collect();
        let sent = SentPredict {
            top_features: predict.top_features(),
            models,
        };
        serde_json::to_value(sent).map_err(|e| exec_datafusion_err!("{PREDICT}: {e}"))
    }

    fn decode(&self, state: &Value) -> DfResult<ScalarUDF> {
        let sent: SentPredict = serde_json::from_value(state.clone()).map_err(|e| {
            exec_datafusion_err!("{PREDICT}: the plan's models are unreadable: {e}")
        })?;
        let lakehouse = self.lakehouse.clone();
        let models = block_on(async move {
            let registry = Registry::new(lakehouse);
            let models = SessionModels::default();
            for (reference, model) in sent.models {
                // Every task of a job decodes its plan: after the first, the model comes
                // from the cache, with no read of the registry.
                let key = (model.name.clone(), model.version, model.sha256.clone());
                if let Some(loaded) = cache::cached(&key) {
                    models.insert(&reference, loaded);
                    continue;
                }
                let exact = ModelRef {
                    name: model.name.clone(),
                    selector: VersionSelector::Number(model.version),
                };
                let loaded = cache::load(&registry, &exact).await.map_err(|e| {
                    exec_datafusion_err!(
                        "{PREDICT}: cannot load model {exact} on this process: {e}; executors must read the lakehouse the driver writes"
                    )
                })?;
                if loaded.manifest.artifact_sha256 != model.sha256 {
                    return exec_err!(
                        "{PREDICT}: model {exact} here has artifact SHA-256 {} but the plan was made with {}: driver and executors read different lakehouses",
                        loaded.manifest.artifact_sha256,
                        model.sha256
                    );
                }
                models.insert(&reference, loaded);
            }
            Ok(models)
        })?;
        Ok(ScalarUDF::from(Predict::new(
            Arc::new(models),
            sent.top_features,
        )))
    }
}

/// Runs `future` to completion from synchronous code (plan decoding), on the current
/// runtime when it has worker threads to spare, else on a runtime of its own.
fn block_on<T: Send>(future: impl Future<Output = DfResult<T>> + Send) -> DfResult<T> {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        _ => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| exec_datafusion_err!("{PREDICT}: {e}"))?
                        .block_on(future)
                })
                .join()
                .map_err(|_| exec_datafusion_err!("{PREDICT}: loading the models panicked"))?
        }),
    }
}
