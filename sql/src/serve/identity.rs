//! Who a connection is, as SQL asks it: `current_user` and `session_user` name the user
//! who logged in, and `has_table_privilege` answers from the role's grants (`SELECT` on a
//! table the role may read; nothing else, as the server is read-only).

use std::sync::Arc;

use lakescore_engine::TableName;
use lakescore_engine::datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use lakescore_engine::datafusion::arrow::compute::cast;
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::datafusion::common::exec_err;
use lakescore_engine::datafusion::error::Result as DfResult;
use lakescore_engine::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use lakescore_engine::datafusion::prelude::SessionContext;
use lakescore_engine::datafusion::scalar::ScalarValue;
use lakescore_engine::sql::session::DEFAULT_SCHEMA;

use super::auth::Users;
use super::grants::Grants;

/// Registers the connection's identity functions on `context`, replacing pg_catalog's
/// placeholders (which answer `postgres` and "yes" to everyone).
pub fn register(context: &SessionContext, user: &str, users: Arc<Users>, grants: Arc<Grants>) {
    for name in ["session_user", "current_user"] {
        context.register_udf(ScalarUDF::new_from_impl(SessionUser {
            name,
            user: user.to_string(),
            signature: Signature::exact(vec![], Volatility::Stable),
        }));
    }
    context.register_udf(ScalarUDF::new_from_impl(HasTablePrivilege {
        role: users.role_of(user).map(str::to_string),
        users,
        grants,
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Utf8]),
            ],
            Volatility::Stable,
        ),
    }));
}

/// `session_user` / `current_user`: the logged-in user's name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SessionUser {
    name: &'static str,
    user: String,
    signature: Signature,
}

impl ScalarUDFImpl for SessionUser {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            self.user.clone(),
        ))))
    }
}

/// `has_table_privilege([user,] table, privilege)` from the grants.
#[derive(Debug)]
struct HasTablePrivilege {
    role: Option<String>,
    users: Arc<Users>,
    grants: Arc<Grants>,
    signature: Signature,
}

impl PartialEq for HasTablePrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.role == other.role
    }
}

impl Eq for HasTablePrivilege {}

impl std::hash::Hash for HasTablePrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.role.hash(state);
    }
}

impl HasTablePrivilege {
    fn allows(&self, role: Option<&str>, table: Option<&str>, privilege: Option<&str>) -> bool {
        let (Some(role), Some(table), Some(privilege)) = (role, table, privilege) else {
            return false;
        };
        let reads = privilege
            .split(',')
            .all(|p| p.trim().eq_ignore_ascii_case("select"));
        let name = if table.contains('.') {
            TableName::parse(table)
        } else {
            TableName::parse(&format!("{DEFAULT_SCHEMA}.{table}"))
        };
        reads && name.is_ok_and(|name| self.grants.allows(role, &name))
    }
}

impl ScalarUDFImpl for HasTablePrivilege {
    fn name(&self) -> &str {
        "has_table_privilege"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|arg| {
                let array = arg.to_array(rows)?;
                let text = cast(&array, &DataType::Utf8)?;
                match text.as_any().downcast_ref::<StringArray>() {
                    Some(strings) => Ok(strings.clone()),
                    None => exec_err!("has_table_privilege takes text arguments"),
                }
            })
            .collect::<DfResult<Vec<StringArray>>>()?;
        let value = |array: &StringArray, row: usize| {
            (!array.is_null(row)).then(|| array.value(row).to_string())
        };
        let answers: BooleanArray = (0..rows)
            .map(|row| {
                let allowed = match texts.as_slice() {
                    [table, privilege] => self.allows(
                        self.role.as_deref(),
                        value(table, row).as_deref(),
                        value(privilege, row).as_deref(),
                    ),
                    [user, table, privilege] => {
                        let role = value(user, row)
                            .and_then(|user| self.users.role_of(&user).map(str::to_string));
                        self.allows(
                            role.as_deref(),
                            value(table, row).as_deref(),
                            value(privilege, row).as_deref(),
                        )
                    }
                    _ => false,
                };
                Some(allowed)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(answers) as ArrayRef))
    }
}
