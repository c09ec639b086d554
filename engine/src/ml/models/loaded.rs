//! The models a SQL session's `predict` calls use: found in each statement before it is
//! planned (the first argument of every `predict(...)` call must be a text literal),
//! resolved through the registry (aliases are read per statement, so a promotion takes
//! effect at once), and loaded through the process's bounded model cache ([`super::cache`]).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    self as sql, FunctionArg, FunctionArgExpr, FunctionArguments, Visitor,
};

use super::cache;
use super::registry::{LoadedModel, ModelRef, Registry};
use crate::error::{Error, Result};
use crate::sql::time_travel::visit_statement;
use crate::storage::lakehouse::Lakehouse;

/// The SQL name of the scoring function.
pub const PREDICT: &str = "predict";

/// The models one session's statements refer to, by reference text.
#[derive(Debug, Default)]
pub struct SessionModels {
    resolved: Mutex<HashMap<String, Arc<LoadedModel>>>,
}

impl SessionModels {
    /// Resolves and loads every model `statement` calls `predict` with.
    pub async fn resolve(&self, lakehouse: &Arc<Lakehouse>, statement: &Statement) -> Result<()> {
        let mut finder = PredictFinder::default();
        visit_statement(statement, &mut finder);
        let registry = Registry::new(lakehouse.clone());
        for text in finder.references {
            let reference = ModelRef::parse(&text?)?;
            let loaded = cache::load(&registry, &reference).await?;
            self.resolved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(reference.to_string(), loaded);
        }
        Ok(())
    }

    /// Records that `reference` (as written in SQL) resolves to `loaded`.
    pub fn insert(&self, reference: &str, loaded: Arc<LoadedModel>) {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reference.to_string(), loaded);
    }

    /// Every reference resolved so far (in the normalized spelling) and its model.
    pub fn entries(&self) -> Vec<(String, Arc<LoadedModel>)> {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(reference, loaded)| (reference.clone(), loaded.clone()))
            .collect()
    }

    /// The model `reference` (as written in SQL) was resolved to.
    pub fn get(&self, reference: &str) -> Option<Arc<LoadedModel>> {
        let key = ModelRef::parse(reference).ok()?.to_string();
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }
}

#[derive(Default)]
struct PredictFinder {
    references: Vec<Result<String>>,
}

impl Visitor for PredictFinder {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &sql::Expr) -> ControlFlow<()> {
        if let sql::Expr::Function(function) = expr
            && function.name.to_string().eq_ignore_ascii_case(PREDICT)
        {
            let first = match &function.args {
                FunctionArguments::List(list) => list.args.first(),
                _ => None,
            };
            let literal = match first {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(sql::Expr::Value(v)))) => {
                    match &v.value {
                        sql::Value::SingleQuotedString(text) => Some(text.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            self.references.push(literal.ok_or_else(|| {
                Error::Sql(format!(
                    "{PREDICT}: the first argument must be a model reference in quotes, e.g. {PREDICT}('churn_risk', ...), {PREDICT}('churn_risk@challenger', ...) or {PREDICT}('churn_risk:3', ...)"
                ))
            }));
        }
        ControlFlow::Continue(())
    }
}
