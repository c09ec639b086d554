//! Server-side cursors, which clients use to page through large results without holding
//! them: `DECLARE name CURSOR FOR query` (psycopg's named cursors, JDBC fetch sizes),
//! `FETCH [FORWARD] n | NEXT | ALL FROM name` and `CLOSE name | ALL`. The query is planned,
//! checked against the role's grants and started under the connection's limits as any
//! query is; its rows wait in a named portal, which clients may also describe, and each
//! `FETCH` takes the next ones (and is audited with them). Cursors scan forward only and
//! live until `CLOSE` or the end of the connection, at most the statement timeout.

use std::sync::Arc;

use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::results::{QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::StoredStatement;
use datafusion_postgres::pgwire::api::store::{MemPortalStore, PortalStore};
use datafusion_postgres::pgwire::error::PgWireResult;
use lakescore_engine::datafusion::logical_expr::LogicalPlan;
use lakescore_engine::datafusion::sql::sqlparser::ast::{
    CloseCursor, DeclareType, FetchDirection, Statement, Value,
};

use super::limits::user_error;

/// The statement datafusion-postgres keeps in a portal: its text, and the parsed
/// statement with its plan, from which clients' Describe is answered.
pub type PortalStatement = (String, Option<(Statement, LogicalPlan)>);

/// A cursor statement.
#[derive(Debug, Clone)]
pub enum CursorStatement {
    /// `DECLARE name CURSOR FOR query`.
    Declare {
        /// The cursor's name.
        name: String,
        /// Its query.
        query: Box<Statement>,
    },
    /// `FETCH`: the next `count` rows of cursor `name`, every remaining row for None.
    Fetch {
        /// The cursor's name.
        name: String,
        /// How many rows.
        count: Option<usize>,
    },
    /// `CLOSE name`, or `CLOSE ALL` for None.
    Close(Option<String>),
}

impl CursorStatement {
    /// The cursor statement `statement` is; an error says what is not supported.
    pub fn parse(statement: &Statement) -> Result<Self, String> {
        match statement {
            Statement::Declare { stmts } => {
                let [declare] = stmts.as_slice() else {
                    return Err(String::from("declare one cursor at a time"));
                };
                if declare.declare_type != Some(DeclareType::Cursor) {
                    return Err(String::from(
                        "only DECLARE ... CURSOR FOR a query is supported",
                    ));
                }
                if declare.binary == Some(true) {
                    return Err(String::from(
                        "binary cursors are not supported: declare the cursor without BINARY",
                    ));
                }
                if declare.scroll == Some(true) {
                    return Err(String::from(
                        "cursors scan forward only: declare the cursor with NO SCROLL",
                    ));
                }
                let (Some(name), Some(query)) = (declare.names.first(), &declare.for_query) else {
                    return Err(String::from("DECLARE needs a cursor name and FOR a query"));
                };
                Ok(Self::Declare {
                    name: name.value.clone(),
                    query: Box::new(Statement::Query(query.clone())),
                })
            }
            Statement::Fetch {
                name, direction, ..
            } => Ok(Self::Fetch {
                name: name.value.clone(),
                count: fetch_count(direction)?,
            }),
            Statement::Close { cursor } => Ok(Self::Close(match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(name.value.clone()),
            })),
            _ => Err(String::from("not a cursor statement")),
        }
    }
}

/// How many rows a `FETCH` direction asks for (None for all); backward and absolute
/// moves are refused.
fn fetch_count(direction: &FetchDirection) -> Result<Option<usize>, String> {
    let number = |value: &Value| match value {
        Value::Number(text, _) => text
            .parse::<usize>()
            .map_err(|_| format!("FETCH count {text} must be a whole number of rows")),
        other => Err(format!("FETCH count {other} must be a number")),
    };
    match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Forward { limit: Some(count) } | FetchDirection::Count { limit: count } => {
            number(count).map(Some)
        }
        FetchDirection::ForwardAll | FetchDirection::All => Ok(None),
        _ => Err(String::from(
            "cursors scan forward only: use FETCH n, FETCH NEXT or FETCH ALL",
        )),
    }
}

/// Opens cursor `name` over `rows` in `store`; a cursor of that name must not exist.
pub async fn declare(
    store: &MemPortalStore<PortalStatement>,
    name: &str,
    statement: PortalStatement,
    rows: QueryResponse,
) -> PgWireResult<Response> {
    if store.get_portal(name).is_some() {
        return Err(user_error(
            "42P03",
            format!("cursor \"{name}\" already exists: CLOSE it first"),
        ));
    }
    let stored = Arc::new(StoredStatement::new(name.to_string(), statement, vec![]));
    let portal = Portal::new_cursor(name.to_string(), stored);
    portal.start(rows).await;
    store.put_portal(Arc::new(portal));
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

/// The next `count` rows of cursor `name` (every remaining row for None).
pub async fn fetch(
    store: &MemPortalStore<PortalStatement>,
    name: &str,
    count: Option<usize>,
) -> PgWireResult<Response> {
    let portal = store
        .get_portal(name)
        .and_then(|entry| entry.value().cloned())
        .ok_or_else(|| user_error("34000", format!("cursor \"{name}\" does not exist")))?;
    match count {
        Some(0) => Ok(Response::Execution(Tag::new("FETCH").with_rows(0))),
        Some(count) => Ok(Response::Query(portal.fetch(count).await?.response)),
        None => Ok(Response::Query(portal.fetch(0).await?.response)),
    }
}

/// Closes cursor `name`, or every cursor for None.
pub fn close(
    store: &MemPortalStore<PortalStatement>,
    name: Option<&str>,
) -> PgWireResult<Response> {
    match name {
        None => store.clear_portals(),
        Some(name) => {
            if store.get_portal(name).is_none() {
                return Err(user_error(
                    "34000",
                    format!("cursor \"{name}\" does not exist"),
                ));
            }
            store.rm_portal(name);
        }
    }
    Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
}

#[cfg(test)]
mod tests {
    use lakescore_engine::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use lakescore_engine::datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parsed(sql: &str) -> Result<CursorStatement, String> {
        let statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statement())
            .unwrap();
        CursorStatement::parse(&statement)
    }

    #[test]
    fn cursor_statements_read_as_their_clients_send_them() {
        let CursorStatement::Declare { name, query } =
            parsed("DECLARE \"c_1\" NO SCROLL CURSOR WITHOUT HOLD FOR SELECT a FROM t").unwrap()
        else {
            panic!("not a declare");
        };
        assert_eq!(
            (name.as_str(), query.to_string().as_str()),
            ("c_1", "SELECT a FROM t")
        );
        for (sql, expected) in [
            ("FETCH FORWARD 500 FROM c", Some(500)),
            ("FETCH 20 FROM c", Some(20)),
            ("FETCH NEXT FROM c", Some(1)),
            ("FETCH ALL FROM c", None),
            ("FETCH FORWARD ALL FROM c", None),
        ] {
            let Ok(CursorStatement::Fetch { count, .. }) = parsed(sql) else {
                panic!("{sql} is not a fetch");
            };
            assert_eq!(count, expected, "{sql}");
        }
        assert!(matches!(parsed("CLOSE c"), Ok(CursorStatement::Close(Some(n))) if n == "c"));
        assert!(matches!(
            parsed("CLOSE ALL"),
            Ok(CursorStatement::Close(None))
        ));
        for (sql, error) in [
            ("FETCH BACKWARD 2 FROM c", "forward only"),
            ("FETCH ABSOLUTE 3 FROM c", "forward only"),
            ("DECLARE c SCROLL CURSOR FOR SELECT 1", "forward only"),
            ("DECLARE c BINARY CURSOR FOR SELECT 1", "binary cursors"),
        ] {
            let message = parsed(sql).unwrap_err();
            assert!(message.contains(error), "{sql}: {message}");
        }
    }
}
