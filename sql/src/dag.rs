//! The models' dependency graph: which tables each model reads (found by DataFusion's SQL
//! parser), the order they run in, and selections of models.
//!
//! A model depends on another when it reads the other's table, directly or in a
//! `relationships` test. Tables no model builds must exist in the lakehouse. Cycles and
//! unknown tables are errors naming the model files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use lakescore_engine::datafusion::sql::parser::Statement;
use lakescore_engine::datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use lakescore_engine::sql::views::read_view;
use lakescore_engine::storage::lakehouse::closest_names;
use lakescore_engine::{Lakehouse, SqlSession, TableName};

use crate::error::{Error, Result};
use crate::model::Model;

/// A model with its parsed query and the tables it reads.
#[derive(Debug, Clone)]
pub struct PlannedModel {
    /// The model.
    pub model: Model,
    /// Its query, parsed.
    pub statement: Statement,
    /// Every table it reads (query and tests), sorted.
    pub reads: Vec<TableName>,
    /// Indexes of the models whose tables it reads.
    pub upstream: Vec<usize>,
}

/// All models, in an order where every model comes after the models it reads.
#[derive(Debug, Clone)]
pub struct ModelGraph {
    models: Vec<PlannedModel>,
}

/// Which models `transform` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One model, by model name or table.
    Model(String),
    /// A model and every model that reads it, directly or not.
    DownstreamOf(String),
    /// A model and every model it reads, directly or not.
    UpstreamOf(String),
}

impl Selector {
    /// Parses `NAME`, `downstream-of:NAME` or `upstream-of:NAME`.
    pub fn parse(text: &str) -> Self {
        if let Some(name) = text.strip_prefix("downstream-of:") {
            Selector::DownstreamOf(name.to_string())
        } else if let Some(name) = text.strip_prefix("upstream-of:") {
            Selector::UpstreamOf(name.to_string())
        } else {
            Selector::Model(text.to_string())
        }
    }
}

impl ModelGraph {
    /// Parses every model, finds what it reads and orders the models.
    pub async fn build(models: Vec<Model>, session: &SqlSession) -> Result<Self> {
        let builds: BTreeMap<TableName, usize> = models
            .iter()
            .enumerate()
            .map(|(index, model)| (model.table.clone(), index))
            .collect();
        let mut planned = Vec::with_capacity(models.len());
        for model in models {
            let statement = parse_query(&model, session)?;
            let mut reads = BTreeSet::new();
            for (written, table) in session.tables_read(&statement)? {
                if !builds.contains_key(&table) && !exists(session.lakehouse(), &table).await? {
                    let known = session.lakehouse().list_tables().await?;
                    let candidates = known.iter().chain(builds.keys()).map(ToString::to_string);
                    return Err(Error::UnknownInput {
                        file: PathBuf::from(&model.display_path),
                        table: written,
                        suggestions: closest_names(&table.to_string(), candidates),
                    });
                }
                reads.insert(table);
            }
            for test in &model.tests {
                if let Some(table) = test.check.tables_read() {
                    if !builds.contains_key(table) && !exists(session.lakehouse(), table).await? {
                        return Err(Error::ModelFile {
                            file: PathBuf::from(&model.display_path),
                            message: format!(
                                "test {} reads {table}, which no model builds and the lakehouse does not have",
                                test.name
                            ),
                        });
                    }
                    reads.insert(table.clone());
                }
            }
            let upstream = reads
                .iter()
                .filter_map(|t| builds.get(t).copied())
                .collect();
            planned.push(PlannedModel {
                model,
                statement,
                reads: reads.into_iter().collect(),
                upstream,
            });
        }
        let order = topological_order(&planned)?;
        let position: BTreeMap<usize, usize> = order
            .iter()
            .enumerate()
            .map(|(at, index)| (*index, at))
            .collect();
        let mut ordered: Vec<PlannedModel> = order.iter().map(|i| planned[*i].clone()).collect();
        for model in &mut ordered {
            model.upstream = model.upstream.iter().map(|i| position[i]).collect();
        }
        Ok(Self { models: ordered })
    }

    /// The models in run order.
    pub fn models(&self) -> &[PlannedModel] {
        &self.models
    }

    /// Indexes (in run order) of the models the selectors name; every model when none.
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<usize>> {
        if selectors.is_empty() {
            return Ok((0..self.models.len()).collect());
        }
        let mut chosen = BTreeSet::new();
        for selector in selectors {
            match selector {
                Selector::Model(name) => {
                    chosen.insert(self.find(name)?);
                }
                Selector::DownstreamOf(name) => {
                    let start = self.find(name)?;
                    // Run order puts every reader after what it reads.
                    let mut downstream = BTreeSet::from([start]);
                    for index in start + 1..self.models.len() {
                        if self.models[index]
                            .upstream
                            .iter()
                            .any(|u| downstream.contains(u))
                        {
                            downstream.insert(index);
                        }
                    }
                    chosen.extend(downstream);
                }
                Selector::UpstreamOf(name) => {
                    let start = self.find(name)?;
                    chosen
                        .extend((0..=start).filter(|i| *i == start || self.depends_on(start, *i)));
                }
            }
        }
        Ok(chosen.into_iter().collect())
    }

    /// True when model `index` reads model `ancestor`, directly or not.
    fn depends_on(&self, index: usize, ancestor: usize) -> bool {
        let mut pending = vec![index];
        let mut seen = BTreeSet::new();
        while let Some(current) = pending.pop() {
            for upstream in &self.models[current].upstream {
                if *upstream == ancestor {
                    return true;
                }
                if seen.insert(*upstream) {
                    pending.push(*upstream);
                }
            }
        }
        false
    }

    fn find(&self, name: &str) -> Result<usize> {
        self.models
            .iter()
            .position(|m| m.model.name == name || m.model.table.to_string() == name)
            .ok_or_else(|| Error::UnknownModel {
                name: name.to_string(),
                known: self.models.iter().map(|m| m.model.name.clone()).collect(),
            })
    }
}

/// The model's one `SELECT`; anything else is an error naming the file.
fn parse_query(model: &Model, session: &SqlSession) -> Result<Statement> {
    let bad = |message: String| Error::ModelFile {
        file: PathBuf::from(&model.display_path),
        message,
    };
    let mut statements = session.parse(&model.sql).map_err(|e| bad(e.to_string()))?;
    match (statements.len(), statements.pop()) {
        (1, Some(statement @ Statement::Statement(_))) => match &statement {
            Statement::Statement(inner) if matches!(inner.as_ref(), SqlStatement::Query(_)) => {
                Ok(statement)
            }
            _ => Err(bad(String::from(
                "a model is one SELECT query; other statements are not run by transform",
            ))),
        },
        (0, _) => Err(bad(String::from(
            "the file holds no query: write one SELECT",
        ))),
        (1, _) => Err(bad(String::from(
            "a model is one SELECT query; other statements are not run by transform",
        ))),
        (n, _) => Err(bad(format!(
            "the file holds {n} statements; a model is exactly one SELECT"
        ))),
    }
}

/// True when `table` is a Delta table or a view in the lakehouse.
async fn exists(lakehouse: &Lakehouse, table: &TableName) -> Result<bool> {
    if lakehouse.open_if_exists(table).await?.is_some() {
        return Ok(true);
    }
    Ok(read_view(lakehouse, table).await?.is_some())
}

/// Kahn's algorithm, taking ready models in file order; the leftovers form a cycle.
fn topological_order(models: &[PlannedModel]) -> Result<Vec<usize>> {
    let mut remaining: Vec<BTreeSet<usize>> = models
        .iter()
        .map(|m| m.upstream.iter().copied().collect())
        .collect();
    let mut order = Vec::with_capacity(models.len());
    let mut done = vec![false; models.len()];
    while order.len() < models.len() {
        let ready = (0..models.len()).find(|i| !done[*i] && remaining[*i].is_empty());
        let Some(next) = ready else {
            return Err(Error::Cycle {
                cycle: find_cycle(models, &done),
            });
        };
        done[next] = true;
        order.push(next);
        for upstream in &mut remaining {
            upstream.remove(&next);
        }
    }
    Ok(order)
}

/// A cycle among the models not yet ordered, as files, the first repeated at the end.
fn find_cycle(models: &[PlannedModel], done: &[bool]) -> Vec<PathBuf> {
    let Some(start) = (0..models.len()).find(|i| !done[*i]) else {
        return Vec::new();
    };
    let mut path = vec![start];
    loop {
        let current = path[path.len() - 1];
        let Some(next) = models[current].upstream.iter().copied().find(|u| !done[*u]) else {
            break;
        };
        if let Some(at) = path.iter().position(|p| *p == next) {
            // `path` follows "reads"; the cycle is printed the way data flows.
            let flow = std::iter::once(next)
                .chain(path[at + 1..].iter().rev().copied())
                .chain(std::iter::once(next));
            return flow
                .map(|i| PathBuf::from(&models[i].model.display_path))
                .collect();
        }
        path.push(next);
    }
    path.iter()
        .map(|i| PathBuf::from(&models[*i].model.display_path))
        .collect()
}
