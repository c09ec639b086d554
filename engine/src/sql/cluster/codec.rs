//! How plans carry lakescore's functions to a Ballista scheduler and its executors.
//!
//! DataFusion sends a function by name; an executor knows lakescore's functions because it
//! is a lakescore process ([`crate::sql::cluster::ClusterProcess`]). Every lakescore
//! function is sent with the sender's lakescore version, and a process of another version
//! refuses the plan with a message saying so. Functions with state beyond their name (the
//! models `predict` resolved) travel with that state through a [`FunctionCodec`].
//! Everything else is Ballista's own encoding.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{TableReference, exec_datafusion_err, plan_err};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_expr_common::physical_expr::proto_decode::PhysicalExprDecodeCtx;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The lakescore version every process of a cluster must run.
pub const LAKESCORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Sends a function whose behaviour depends on state its name does not carry.
pub trait FunctionCodec: Send + Sync + fmt::Debug {
    /// The function's SQL name.
    fn name(&self) -> &str;

    /// The state `function` (an instance of this codec's function) needs elsewhere.
    fn encode(&self, function: &ScalarUDF) -> DfResult<Value>;

    /// The function rebuilt from the state [`Self::encode`] wrote.
    fn decode(&self, state: &Value) -> DfResult<ScalarUDF>;
}

/// What a lakescore function carries in a plan.
#[derive(Debug, Serialize, Deserialize)]
struct SentFunction {
    lakescore: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    state: Value,
}

/// Ballista's plan codecs, with lakescore's functions.
#[derive(Debug)]
pub struct ClusterCodec {
    logical: BallistaLogicalExtensionCodec,
    physical: BallistaPhysicalExtensionCodec,
    functions: HashMap<String, Arc<ScalarUDF>>,
    stateful: HashMap<String, Arc<dyn FunctionCodec>>,
}

impl ClusterCodec {
    /// A codec that knows `functions` (lakescore's own, by name) and sends the state of
    /// those `stateful` names.
    pub fn new(
        functions: impl IntoIterator<Item = ScalarUDF>,
        stateful: impl IntoIterator<Item = Arc<dyn FunctionCodec>>,
    ) -> Self {
        Self {
            logical: BallistaLogicalExtensionCodec::default(),
            physical: BallistaPhysicalExtensionCodec::default(),
            functions: functions
                .into_iter()
                .map(|f| (f.name().to_string(), Arc::new(f)))
                .collect(),
            stateful: stateful
                .into_iter()
                .map(|c| (c.name().to_string(), c))
                .collect(),
        }
    }

    fn encode_function(&self, function: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        let name = function.name();
        let state = match self.stateful.get(name) {
            Some(codec) => codec.encode(function)?,
            None if self.functions.contains_key(name) => Value::Null,
            // DataFusion's own functions travel by name.
            None => return Ok(()),
        };
        let sent = SentFunction {
            lakescore: LAKESCORE_VERSION.to_string(),
            state,
        };
        serde_json::to_writer(buf, &sent)
            .map_err(|e| exec_datafusion_err!("cannot send function {name}: {e}"))
    }

    fn decode_function(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        let known = || {
            self.functions.get(name).cloned().ok_or_else(|| {
                exec_datafusion_err!(
                    "function {name} is not known to this lakescore process: run one lakescore version on the driver, the scheduler and every executor"
                )
            })
        };
        if buf.is_empty() {
            return known();
        }
        let sent: SentFunction = serde_json::from_slice(buf).map_err(|e| {
            exec_datafusion_err!(
                "function {name} was sent by another program than lakescore {LAKESCORE_VERSION} ({e}): run one lakescore version on the driver, the scheduler and every executor"
            )
        })?;
        if sent.lakescore != LAKESCORE_VERSION {
            return plan_err!(
                "version mismatch: this process runs lakescore {LAKESCORE_VERSION} but the plan comes from lakescore {}: run one lakescore version on the driver, the scheduler and every executor",
                sent.lakescore
            );
        }
        match self.stateful.get(name) {
            Some(codec) => Ok(Arc::new(codec.decode(&sent.state)?)),
            None => known(),
        }
    }
}

impl LogicalExtensionCodec for ClusterCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.logical.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.logical.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        self.logical
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        self.logical.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.logical.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.logical.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.decode_function(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.encode_function(node, buf)
    }
}

impl PhysicalExtensionCodec for ClusterCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.physical.try_decode(buf, inputs, ctx, converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        self.physical.try_encode(node, buf, converter)
    }

    fn try_decode_expr(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn PhysicalExpr>],
        ctx: &PhysicalExprDecodeCtx<'_>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        self.physical.try_decode_expr(buf, inputs, ctx)
    }

    fn try_encode_expr(
        &self,
        node: &Arc<dyn PhysicalExpr>,
        buf: &mut Vec<u8>,
        ctx: &PhysicalExprEncodeCtx<'_>,
    ) -> DfResult<()> {
        self.physical.try_encode_expr(node, buf, ctx)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        self.decode_function(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        self.encode_function(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FunctionsConfig;
    use crate::sql::functions::{FunctionWarnings, all_functions};

    fn codec() -> ClusterCodec {
        let functions = all_functions(&FunctionsConfig::default(), &FunctionWarnings::default());
        ClusterCodec::new(functions, [])
    }

    fn lakescore_function(codec: &ClusterCodec) -> Arc<ScalarUDF> {
        codec.functions["normalize_email"].clone()
    }

    #[test]
    fn lakescore_functions_travel_with_the_version_and_datafusions_by_name() {
        let codec = codec();
        let mut sent = Vec::new();
        LogicalExtensionCodec::try_encode_udf(&codec, &lakescore_function(&codec), &mut sent)
            .unwrap();
        let text = String::from_utf8(sent.clone()).unwrap();
        assert_eq!(text, format!("{{\"lakescore\":\"{LAKESCORE_VERSION}\"}}"));
        let received =
            PhysicalExtensionCodec::try_decode_udf(&codec, "normalize_email", &sent).unwrap();
        assert_eq!(received.name(), "normalize_email");

        let lower = datafusion::functions::string::lower();
        let mut sent = Vec::new();
        PhysicalExtensionCodec::try_encode_udf(&codec, &lower, &mut sent).unwrap();
        assert!(sent.is_empty(), "DataFusion's functions are found by name");
    }

    #[test]
    fn a_plan_from_another_lakescore_version_is_refused_with_what_to_do() {
        let codec = codec();
        let sent = br#"{"lakescore":"0.0.1"}"#;
        let error = LogicalExtensionCodec::try_decode_udf(&codec, "normalize_email", sent)
            .unwrap_err()
            .strip_backtrace();
        assert!(
            error.contains(&format!(
                "version mismatch: this process runs lakescore {LAKESCORE_VERSION} but the plan comes from lakescore 0.0.1: run one lakescore version on the driver, the scheduler and every executor"
            )),
            "{error}"
        );
        let error = PhysicalExtensionCodec::try_decode_udf(&codec, "normalize_email", b"\x0a\x01")
            .unwrap_err()
            .strip_backtrace();
        assert!(
            error.contains("was sent by another program than lakescore"),
            "{error}"
        );
        let error = PhysicalExtensionCodec::try_decode_udf(&codec, "score_everything", &[])
            .unwrap_err()
            .strip_backtrace();
        assert!(
            error.contains("function score_everything is not known to this lakescore process"),
            "{error}"
        );
    }
}
