//! `version()` in PostgreSQL's form: SQLAlchemy, and so Superset and pandas, read the
//! major version from it on connect.

use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::datafusion::error::Result as DfResult;
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::scalar::ScalarValue;

/// The PostgreSQL release whose catalog and behaviour the server follows.
pub(super) const POSTGRES_VERSION: &str = "16.6";

/// The `server_version` clients are told on login and by `SHOW server_version`, e.g.
/// `16.6 (lakescore 0.1.0)`: drivers read the numbers before the first space.
pub fn server_version() -> String {
    format!(
        "{POSTGRES_VERSION} (lakescore {})",
        env!("CARGO_PKG_VERSION")
    )
}

/// What `version()` answers, e.g. `PostgreSQL 16.6 (lakescore 0.1.0, Apache DataFusion
/// 55.2.0) on x86_64-linux`.
fn version_text() -> String {
    format!(
        "PostgreSQL {POSTGRES_VERSION} (lakescore {}, Apache DataFusion {}) on {}-{}",
        env!("CARGO_PKG_VERSION"),
        lakescore_engine::datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// Registers `version()` on `context`, replacing DataFusion's, which names DataFusion
/// alone and so is not understood by clients that parse PostgreSQL's form.
pub fn register(context: &SessionContext) {
    context.register_udf(ScalarUDF::new_from_impl(Version {
        signature: Signature::exact(vec![], Volatility::Stable),
    }));
}

/// `version()`: the server in PostgreSQL's form.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Version {
    signature: Signature,
}

impl ScalarUDFImpl for Version {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            version_text(),
        ))))
    }
}
