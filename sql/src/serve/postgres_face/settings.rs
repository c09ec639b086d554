//! A connection's settings as PostgreSQL clients read and use them: `SET search_path`
//! with every schema of the list (see [`super::search_path`] for what it decides);
//! `current_setting(name)`, `current_schema()`, `current_schemas(bool)` and `SHOW`
//! answer from the connection's settings and PostgreSQL's defaults for a read-only
//! server.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::results::{
    DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use datafusion_postgres::pgwire::error::PgWireResult;
use lakescore_engine::datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use lakescore_engine::datafusion::arrow::datatypes::{
    DataType, Field as ArrowField, Schema as ArrowSchema,
};
use lakescore_engine::datafusion::common::{DFSchema, ParamValues};
use lakescore_engine::datafusion::error::{DataFusionError, Result as DfResult};
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, EmptyRelation, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TypeSignature, Volatility, create_udf,
};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::scalar::ScalarValue;
use lakescore_engine::datafusion::sql::sqlparser::ast::{
    Expr, Set, Statement, Value, ValueWithSpan,
};

use super::search_path::parse_search_path;
use super::shaped_like;
use super::version::{POSTGRES_VERSION, server_version};
use crate::serve::auth::user_of;
use crate::serve::limits::user_error;

/// The client key the connection's `search_path` is kept under.
pub const SEARCH_PATH: &str = "search_path";

/// The search path of a connection that set none and whose role names none.
const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// A connection's settings for one statement.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every setting by lower-case name, as `current_setting` and `SHOW` answer.
    values: BTreeMap<String, String>,
    /// The schemas unqualified names are looked up in, in order.
    pub search_path: Vec<String>,
}

impl Settings {
    /// The settings of `client`, whose role's search path is `role_path` (None for the
    /// default).
    pub fn of<C: ClientInfo + ?Sized>(
        client: &C,
        user: &str,
        role_path: Option<&[String]>,
    ) -> Self {
        let mut values: BTreeMap<String, String> = [
            ("server_version", server_version()),
            ("server_version_num", server_version_num()),
            ("server_encoding", String::from("UTF8")),
            ("client_encoding", String::from("UTF8")),
            ("standard_conforming_strings", String::from("on")),
            ("integer_datetimes", String::from("on")),
            ("max_identifier_length", String::from("63")),
            ("datestyle", String::from("ISO, MDY")),
            ("intervalstyle", String::from("postgres")),
            ("timezone", String::from("UTC")),
            ("transaction_isolation", String::from("read committed")),
            (
                "default_transaction_isolation",
                String::from("read committed"),
            ),
            ("transaction_read_only", String::from("on")),
            ("default_transaction_read_only", String::from("on")),
            ("is_superuser", String::from("off")),
            ("application_name", String::new()),
            ("lc_collate", String::from("C.UTF-8")),
            ("lc_ctype", String::from("C.UTF-8")),
            ("lc_messages", String::from("C.UTF-8")),
            ("lc_monetary", String::from("C.UTF-8")),
            ("lc_numeric", String::from("C.UTF-8")),
            ("lc_time", String::from("C.UTF-8")),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        for (name, value) in client.metadata() {
            values.insert(name.to_lowercase(), value.clone());
        }
        let path_text = match (values.get(SEARCH_PATH), role_path) {
            (Some(set), _) => set.clone(),
            (None, Some(role)) => role
                .iter()
                .map(|schema| format!("\"{}\"", schema.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", "),
            (None, None) => String::from(DEFAULT_SEARCH_PATH),
        };
        values.insert(String::from(SEARCH_PATH), path_text.clone());
        values.insert(String::from("session_authorization"), user.to_string());
        Self {
            search_path: parse_search_path(&path_text, user),
            values,
        }
    }

    /// The value of setting `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(&name.to_lowercase()).map(String::as_str)
    }

    /// Registers `current_setting`, `current_schema` and `current_schemas` on `context`,
    /// answering from these settings; `existing` are the schemas the client can see.
    pub fn register(&self, context: &SessionContext, existing: &HashSet<String>) {
        let path: Vec<String> = self
            .search_path
            .iter()
            .filter(|schema| existing.contains(*schema))
            .cloned()
            .collect();
        context.register_udf(ScalarUDF::new_from_impl(CurrentSetting {
            values: self.values.clone(),
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }));
        let first = path.first().cloned();
        context.register_udf(create_udf(
            "current_schema",
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(first.clone())))
            }),
        ));
        context.register_udf(create_udf(
            "current_schemas",
            vec![DataType::Boolean],
            DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true))),
            Volatility::Stable,
            Arc::new(move |args: &[ColumnarValue]| {
                let implicit = args[0].to_array(1)?;
                let with_implicit = implicit
                    .as_boolean()
                    .iter()
                    .next()
                    .flatten()
                    .unwrap_or(false);
                let implicit = with_implicit.then(|| ScalarValue::from("pg_catalog"));
                let schemas: Vec<ScalarValue> = implicit
                    .into_iter()
                    .chain(path.iter().map(|schema| ScalarValue::from(schema.as_str())))
                    .collect();
                Ok(ColumnarValue::Scalar(ScalarValue::List(
                    ScalarValue::new_list_nullable(&schemas, &DataType::Utf8),
                )))
            }),
        ));
    }
}

/// Finds the search path a user's role names (`[[serve.role]] search_path`).
pub type RoleSearchPath = Arc<dyn Fn(&str) -> Option<Vec<String>> + Send + Sync>;

/// Answers `SET search_path` with every schema of the list (datafusion-postgres would
/// keep the first alone) and `SHOW` of any setting [`Settings`] knows; other `SET` and
/// `SHOW` statements pass on to datafusion-postgres.
pub struct SettingsHook {
    role_search_path: RoleSearchPath,
}

impl SettingsHook {
    /// The hook for one connection.
    pub fn new(role_search_path: RoleSearchPath) -> Self {
        Self { role_search_path }
    }

    /// What `statement` is to this hook.
    fn statement_kind(statement: &Statement) -> Option<SettingStatement> {
        match statement {
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) if variable.to_string().eq_ignore_ascii_case(SEARCH_PATH) => {
                let schemas: Vec<String> = values.iter().map(search_path_part).collect();
                Some(SettingStatement::SetSearchPath(
                    (!(schemas.len() == 1 && schemas[0].eq_ignore_ascii_case("default")))
                        .then(|| schemas.join(", ")),
                ))
            }
            Statement::ShowVariable { variable } => match variable.as_slice() {
                [name] => Some(SettingStatement::Show(name.value.to_lowercase())),
                _ => None,
            },
            _ => None,
        }
    }

    fn answer(
        &self,
        kind: SettingStatement,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match kind {
            SettingStatement::SetSearchPath(Some(path)) => {
                client
                    .metadata_mut()
                    .insert(String::from(SEARCH_PATH), path);
                Some(Ok(Response::Execution(Tag::new("SET"))))
            }
            SettingStatement::SetSearchPath(None) => {
                client.metadata_mut().remove(SEARCH_PATH);
                Some(Ok(Response::Execution(Tag::new("SET"))))
            }
            SettingStatement::Show(name) => {
                let user = user_of(&*client);
                let role_path = (self.role_search_path)(&user);
                let settings = Settings::of(&*client, &user, role_path.as_deref());
                let value = settings.get(&name)?.to_string();
                Some(show_response(&name, value).map(Response::Query))
            }
        }
    }
}

/// A statement [`SettingsHook`] answers.
enum SettingStatement {
    /// `SET search_path`: the new path, or None for `DEFAULT`.
    SetSearchPath(Option<String>),
    /// `SHOW name`.
    Show(String),
}

/// One schema of `SET search_path TO a, "B", 'c'` as search-path text.
fn search_path_part(value: &Expr) -> String {
    match value {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text),
            ..
        }) => text.clone(),
        Expr::Identifier(ident) if ident.quote_style.is_some() => {
            format!("\"{}\"", ident.value.replace('"', "\"\""))
        }
        other => other.to_string(),
    }
}

/// One row, one text column `name`: `value`.
fn show_response(name: &str, value: String) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(QueryResponse::new(
        fields,
        futures::stream::once(async move { Ok(row) }),
    ))
}

#[async_trait]
impl QueryHook for SettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(Self::statement_kind(statement)?, client)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let fields = match Self::statement_kind(statement)? {
            SettingStatement::SetSearchPath(_) => vec![],
            SettingStatement::Show(name) => {
                let user = user_of(client);
                let role_path = (self.role_search_path)(&user);
                Settings::of(client, &user, role_path.as_deref()).get(&name)?;
                vec![ArrowField::new(name, DataType::Utf8, false)]
            }
        };
        Some(
            DFSchema::try_from(ArrowSchema::new(fields))
                .map(|schema| {
                    LogicalPlan::EmptyRelation(EmptyRelation {
                        produce_one_row: true,
                        schema: Arc::new(schema),
                    })
                })
                .map_err(|e| user_error("XX000", e.to_string())),
        )
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(Self::statement_kind(statement)?, client)
    }
}

/// `server_version_num`: 160006 for 16.6.
fn server_version_num() -> String {
    let mut parts = POSTGRES_VERSION
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major * 10_000 + minor).to_string()
}

/// `current_setting(name [, missing_ok])`: a setting's value; an unknown name fails
/// unless `missing_ok`, as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    values: BTreeMap<String, String>,
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let names = args.args[0].to_array(rows)?;
        let missing_ok = match args.args.get(1) {
            Some(flag) => Some(flag.to_array(rows)?),
            None => None,
        };
        let mut answers = Vec::with_capacity(names.len());
        for (row, name) in names.as_string::<i32>().iter().enumerate() {
            let Some(name) = name else {
                answers.push(None);
                continue;
            };
            let may_miss = missing_ok.as_ref().is_some_and(|ok| {
                let ok = ok.as_boolean();
                ok.is_valid(row) && ok.value(row)
            });
            match self.values.get(&name.to_lowercase()) {
                Some(value) => answers.push(Some(value.clone())),
                None if may_miss => answers.push(None),
                None => {
                    return Err(DataFusionError::Execution(format!(
                        "unrecognized configuration parameter \"{name}\""
                    )));
                }
            }
        }
        let answers: ArrayRef = Arc::new(StringArray::from(answers));
        shaped_like(&args.args, answers)
    }
}
