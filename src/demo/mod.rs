//! `lakescore demo`: a complete sample project on generated extracts and SQL models, run
//! end to end in a local lakehouse, then a summary of what it built and what to try next.

mod generate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lakescore_engine::datafusion::arrow::array::StringArray;
use lakescore_engine::datafusion::arrow::compute::cast;
use lakescore_engine::datafusion::arrow::datatypes::DataType;
use lakescore_engine::run::RunContext;
use lakescore_engine::sql::output::{Destination, OutputFormat};
use lakescore_engine::{Lakehouse, Project, SqlSession};
use lakescore_sql::serve::hash_password;

pub use generate::{Generation, generate};

/// The demo's project file.
const PROJECT_FILE: &str = r#"# The lakescore demo project: generated CRM, ERP and product-usage extracts.

[project]
name = "lakescore-demo"

[lakehouse]
root = "./lakehouse"

# CRM account exports (Salesforce-style CSV). Each export holds the accounts that changed,
# so it is merged into the table on account_id: the newest export wins.
[[source]]
name = "crm_accounts"
path = "extracts/crm/accounts_*.csv"
format = "csv"
table = "raw.crm_accounts"
dialect = "crm"
mode = "merge"
key = ["account_id"]
max_bad_rows = "5%"
[source.schema]
account_id = { type = "string", required = true }
name = "string"
industry = "string"
is_active = "boolean"
churned = "boolean"
created_at = "timestamp"
annual_revenue = "decimal(18,2)"
notes = "string"

# CRM contacts: hand-typed emails and phone numbers, merged on contact_id.
[[source]]
name = "crm_contacts"
path = "extracts/crm/contacts_*.csv"
format = "csv"
table = "raw.crm_contacts"
dialect = "crm"
mode = "merge"
key = ["contact_id"]
[source.schema]
contact_id = { type = "string", required = true }
account_id = { type = "string", required = true }
first_name = "string"
last_name = "string"
email = "string"
phone = "string"
title = "string"
updated_at = "timestamp"

# CRM support tickets, appended day by day.
[[source]]
name = "crm_tickets"
path = "extracts/crm/tickets_*.csv"
format = "csv"
table = "raw.crm_tickets"
dialect = "crm"
[source.schema]
ticket_id = { type = "string", required = true }
account_id = { type = "string", required = true }
opened_at = "timestamp"
priority = "string"
status = "string"
subject = "string"

# SAP customer master (Kundenstamm): the same customers under ERP numbers.
[[source]]
name = "erp_customers"
path = "extracts/erp/kunden_*.csv"
format = "csv"
table = "raw.erp_customers"
dialect = "erp"
mode = "merge"
key = ["Kunden-Nr."]
[source.schema]
"Kunden-Nr." = { type = "string", required = true }
Name = "string"
Ort = "string"
Land = "string"
"Kreditlimit (EUR)" = "decimal(18,2)"
"Angelegt am" = "date"
Gesperrt = "boolean"

# SAP open-items reports: semicolons, Windows-1252, preamble lines, decimal commas.
[[source]]
name = "erp_invoices"
path = "extracts/erp/invoices_*.csv"
format = "csv"
table = "raw.erp_invoices"
dialect = "erp"
[source.schema]
"Kunden-Nr." = { type = "string", required = true }
Name = "string"
Rechnung = { type = "string", required = true }
Datum = "date"
"Betrag (EUR)" = "decimal(18,2)"
Storno = "boolean"

# SAP incoming payments (Zahlungseingänge); reversals carry a trailing minus.
[[source]]
name = "erp_payments"
path = "extracts/erp/zahlungen_*.csv"
format = "csv"
table = "raw.erp_payments"
dialect = "erp"
[source.schema]
Beleg = { type = "string", required = true }
"Kunden-Nr." = { type = "string", required = true }
Rechnung = "string"
Zahldatum = "date"
"Betrag (EUR)" = "decimal(18,2)"

# Product usage events dropped by the app as JSON lines, one folder per day.
[[source]]
name = "usage_events"
path = "extracts/events/*/*/*/events.jsonl"
format = "json"
table = "raw.usage_events"

# Churn overrides exported from the CRM: account managers mark whether a customer is
# really churning. They correct the churn_risk predictions (matched by customer_id to the
# newest prediction made before the override).
[[source]]
name = "churn_overrides"
path = "extracts/crm/churn_overrides_*.csv"
format = "csv"
table = "feedback.churn_risk"
dialect = "crm"
[source.schema]
customer_id = { type = "string", required = true }
corrected_label = "string"
corrected_by = "string"
corrected_at = "timestamp"
comment = "string"

# Churn risk: learned from the customers whose outcome the CRM knows.
[[model]]
name = "churn_risk"
description = "Risk that a customer cancels, with the features that drove it"
task = "classification"
algorithm = "gradient_boosting"
training_table = "curated.customer_features"
label = "churned"
key = ["customer_id"]
params = { n_estimators = 100, learning_rate = 0.05, max_leaves = 8 }
[model.features]
industry = "categorical"
tenure_days = "numeric"
annual_revenue = "numeric"
invoiced_eur = "numeric"
invoices = "numeric"
paid_eur = "numeric"
tickets = "numeric"
events = "numeric"
seconds = "numeric"
[model.retrain]
feedback_weight = 2.0
[model.monitoring]
min_auc = 0.7

# The nightly pipeline: `lakescore run nightly` runs it now (the demo's day 2 does),
# `lakescore scheduler` every night at 03:00 Berlin time.
[[job]]
name = "nightly"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
retries = 1
retry_delay = "1m"
steps = [
  { ingest = true },
  { transform = true },
  { score = "churn_risk", input = "curated.customer_features" },
  { drift = "churn_risk", table = "curated.customer_features" },
  { feedback = "churn_risk" },
  { retrain = "churn_risk" },                 # only when drift or performance requested it
  { name = "rescore", score = "churn_risk", input = "curated.customer_features" },
  { check = true },
]

# `lakescore serve` for psql and BI tools. The demo's passwords are the user names;
# a real project keeps them in the environment (password = "${ANALYST_PASSWORD}").
[serve]
listen = "127.0.0.1:5432"
[[serve.role]]
name = "analyst"
select = ["curated", "scored", "monitoring", "training"]
[[serve.role]]
name = "engineer"
select = ["*"]
[[serve.user]]
name = "analyst"
password_hash = "ANALYST_HASH"
role = "analyst"
[[serve.user]]
name = "engineer"
password_hash = "ENGINEER_HASH"
role = "engineer"

# Extracts arrive daily; curated tables follow their inputs within the hour.
[freshness.tables]
"raw.*" = { max_age = "26h" }
"curated.*" = { max_input_lag = "1h" }
"#;

/// The demo's SQL models: file name and text.
const MODELS: [(&str, &str); 4] = [
    (
        "contacts.sql",
        r#"/*
description = "CRM contacts with normalized emails and E.164 phone numbers"

[[tests]]
unique = "contact_id"
[[tests]]
relationships = { column = "customer_id", to = "curated.customers" }
severity = "warn"
*/
SELECT contact_id,
       account_id AS customer_id,
       first_name,
       last_name,
       normalize_email(email) AS email,
       normalize_phone(phone, 'DE') AS phone,
       title,
       updated_at
FROM raw.crm_contacts
"#,
    ),
    (
        "customers.sql",
        r#"/*
description = "One row per customer: CRM accounts reconciled with their ERP invoices"
materialized = "merge"
key = ["customer_id"]

[columns]
customer_id = "CRM account id, e.g. ACC-000042"
erp_customer_no = "The same customer's number in the ERP (Kunden-Nr.)"
churned = "Whether the customer churned; empty while the CRM does not know yet"
tenure_days = "Days since the account was created"
invoiced_eur = "Sum of the customer's invoices, cancellations (Storno) excluded"
paid_eur = "Sum of the customer's payments, reversals subtracted"
tickets = "Support tickets the customer opened"
country = "From the ERP customer master (Land)"

[[tests]]
unique = "customer_id"
[[tests]]
not_null = ["customer_id", "name"]
[[tests]]
accepted_values = { column = "industry", values = ["Manufacturing", "Retail", "Finance", "Energy", "Software"] }
severity = "warn"
[[tests]]
range = { column = "invoiced_eur", min = 0 }
*/
SELECT a.account_id AS customer_id,
       a.name,
       a.industry,
       a.is_active,
       a.churned,
       a.created_at,
       CAST((to_unixtime(now()) - to_unixtime(a.created_at)) / 86400 AS BIGINT) AS tenure_days,
       a.annual_revenue,
       lpad(substr(a.account_id, 5), 7, '0') AS erp_customer_no,
       k.land AS country,
       k.kreditlimit_eur AS credit_limit_eur,
       coalesce(i.invoiced_eur, 0) AS invoiced_eur,
       coalesce(i.invoices, 0) AS invoices,
       coalesce(p.paid_eur, 0) AS paid_eur,
       coalesce(t.tickets, 0) AS tickets
FROM raw.crm_accounts a
LEFT JOIN raw.erp_customers k ON k.kunden_nr = lpad(substr(a.account_id, 5), 7, '0')
LEFT JOIN (SELECT kunden_nr,
                  sum(CASE WHEN storno THEN 0 ELSE betrag_eur END) AS invoiced_eur,
                  count(*) AS invoices
           FROM raw.erp_invoices GROUP BY kunden_nr) i
       ON i.kunden_nr = lpad(substr(a.account_id, 5), 7, '0')
LEFT JOIN (SELECT kunden_nr, sum(betrag_eur) AS paid_eur FROM raw.erp_payments GROUP BY kunden_nr) p
       ON p.kunden_nr = lpad(substr(a.account_id, 5), 7, '0')
LEFT JOIN (SELECT account_id, count(*) AS tickets FROM raw.crm_tickets GROUP BY account_id) t
       ON t.account_id = a.account_id
"#,
    ),
    (
        "customer_activity.sql",
        r#"/*
description = "Product usage per customer"

[[tests]]
unique = "customer_id"
[[tests]]
relationships = { column = "customer_id", to = "curated.customers" }
severity = "warn"
*/
SELECT account_id AS customer_id,
       count(*) AS events,
       count(DISTINCT event) AS distinct_events,
       sum(seconds) AS seconds,
       max("at") AS last_seen
FROM raw.usage_events
GROUP BY account_id
"#,
    ),
    (
        "customer_features.sql",
        r#"/*
description = "Customers with their usage: the features churn_risk learns from and scores"
*/
SELECT c.customer_id, c.industry, c.country, c.is_active, c.churned, c.tenure_days,
       c.annual_revenue, c.invoiced_eur, c.invoices, c.paid_eur, c.tickets,
       coalesce(a.events, 0) AS events,
       coalesce(a.seconds, 0) AS seconds,
       a.last_seen
FROM curated.customers c
LEFT JOIN curated.customer_activity a USING (customer_id)
"#,
    ),
];

/// Queries the summary suggests; each runs against the demo's tables.
pub const QUERIES: [&str; 5] = [
    "select customer_id, round(probability, 3) as risk, top_features from scored.churn_risk where model_version = (select max(model_version) from scored.churn_risk) order by probability desc limit 5",
    "select version, aliases, round(roc_auc, 3) as roc_auc, decision_reason from ops.model_versions order by version",
    "select customer_id, churned, original_prediction, corrected_by, comment, feedback_ref from training.churn_risk_feedback where comment is not null limit 5",
    "select request_id, status, reason, outcome from monitoring.retrain_requests order by requested_at",
    "select _source_file, _source_row, \"column\", error from quarantine.feedback_churn_risk",
];

/// Options of `lakescore demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the demo project goes.
    pub dir: PathBuf,
    /// Customers to generate.
    pub customers: u32,
    /// Random seed.
    pub seed: u64,
    /// Rebuild an existing demo.
    pub force: bool,
}

/// `lakescore demo generate`: writes one day's extracts and prints their paths.
pub fn print_generated(out: &Path, generation: Generation) -> anyhow::Result<()> {
    let generated = generate(out, generation)?;
    for file in &generated.files {
        println!("{}", file.display());
    }
    Ok(())
}

/// Builds and runs the demo project.
pub async fn run(options: &DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let project_file = options.dir.join("lakescore.toml");
    if project_file.exists() && !options.force {
        println!(
            "A demo project already exists in {}.\nExplore it with `cd {} && lakescore tables`, or rebuild it with `lakescore demo --force`.",
            options.dir.display(),
            options.dir.display()
        );
        return Ok(());
    }
    if options.force {
        for generated in ["lakehouse", "extracts", ".lakescore"] {
            remove_if_exists(&options.dir.join(generated))?;
        }
    }
    std::fs::create_dir_all(options.dir.join("models"))?;
    let project_text = PROJECT_FILE
        .replace("ANALYST_HASH", &hash_password("analyst"))
        .replace("ENGINEER_HASH", &hash_password("engineer"));
    std::fs::write(&project_file, project_text)?;
    for (file, sql) in MODELS {
        std::fs::write(options.dir.join("models").join(file), sql)?;
    }
    let project = Arc::new(Project::load(&project_file)?);
    let lakehouse = Arc::new(Lakehouse::for_project(&project)?);
    let cx = RunContext::new(project.clone(), lakehouse.clone());
    println!("lakescore demo in {}\n", project.dir.display());

    for day in 1..=2 {
        let step = Instant::now();
        let generation = Generation {
            customers: options.customers,
            day,
            seed: options.seed,
        };
        let generated = generate(&project.dir.join("extracts"), generation)?;
        println!(
            "day {day}: generated {} extract records in {} files ({} broken on purpose)",
            generated.records,
            generated.files.len(),
            generated.broken
        );
        if day == 1 {
            crate::ingest::run(&cx.next_run(), Vec::new()).await?;
            crate::transform::run(&cx.next_run(), Vec::new(), false).await?;
            crate::models::train(&cx.next_run(), MODEL).await?;
            crate::models::score(&cx.next_run(), MODEL, SCORED_INPUT, None).await?;
            let drift = crate::drift::DriftRequest {
                model: MODEL.to_string(),
                table: SCORED_INPUT.to_string(),
                since: None,
                window: None,
                time_column: None,
                report: None,
            };
            crate::drift::run(&cx.next_run(), drift).await?;
        } else {
            // Day 2 is the nightly job: new extracts and the staff's corrections landed,
            // scored, checked for drift, turned into a training set, retrained on request.
            crate::jobs::run(&cx.next_run(), "nightly", None).await?;
        }
        println!("day {day} done in {:.1}s\n", step.elapsed().as_secs_f64());
    }

    println!("Tables:");
    crate::query::write_table_listing(&lakehouse, OutputFormat::Table, &Destination::Stdout)
        .await?;
    println!("\nModel versions (lakescore models list):");
    crate::models::list(lakehouse.clone(), Some(MODEL)).await?;
    summarize_loop(&lakehouse).await?;
    print_next_steps(&project.dir, started);
    Ok(())
}

/// The model the demo trains.
const MODEL: &str = "churn_risk";
/// The table it scores.
const SCORED_INPUT: &str = "curated.customer_features";

/// Drift findings with the report, realized metrics, and the retrain decision.
async fn summarize_loop(lakehouse: &Arc<Lakehouse>) -> anyhow::Result<()> {
    let session = SqlSession::builder(lakehouse.clone()).build().await?;
    let drifted = texts(
        &session,
        "select distinct column_name from monitoring.drift_metrics \
         where column_drifted and data_type <> 'prediction' \
         and current_version = (select max(current_version) from monitoring.drift_metrics) order by column_name",
    )
    .await?;
    println!(
        "\nDrift on day 2: {} features drifted ({})",
        drifted.len(),
        drifted.join(", ")
    );
    let reports = lakehouse
        .root()
        .join("_reports/drift/churn_risk/")
        .ok()
        .and_then(|url| url.to_file_path().ok());
    if let Some(newest) = reports.as_deref().and_then(newest_file) {
        println!("  report: {}", newest.display());
    }
    for line in texts(
        &session,
        "select concat('churn_risk:', cast(model_version as varchar), ' on ', cast(labeled_rows as varchar), \
         ' labeled predictions: roc_auc ', cast(round(roc_auc, 3) as varchar), ', accuracy ', \
         cast(round(accuracy, 3) as varchar)) from monitoring.model_performance order by window_start, model_version",
    )
    .await?
    {
        println!("Realized (monitoring.model_performance): {line}");
    }
    for line in texts(
        &session,
        "select concat(request_id, ': ', reason, ' -> ', coalesce(outcome, status)) \
         from monitoring.retrain_requests order by requested_at",
    )
    .await?
    {
        println!("Retrain request {line}");
    }
    Ok(())
}

/// The first column of `sql`'s rows, as text.
async fn texts(session: &SqlSession, sql: &str) -> anyhow::Result<Vec<String>> {
    let batches = session
        .sql(sql)
        .await?
        .collect()
        .await
        .map_err(lakescore_engine::Error::from)?;
    let mut values = Vec::new();
    for batch in batches {
        let column = cast(batch.column(0), &DataType::Utf8)?;
        if let Some(text) = column.as_any().downcast_ref::<StringArray>() {
            values.extend(text.iter().flatten().map(str::to_string));
        }
    }
    Ok(values)
}

/// The most recently modified file in `dir`.
fn newest_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            Some((entry.metadata().ok()?.modified().ok()?, entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}

fn print_next_steps(dir: &Path, started: Instant) {
    println!(
        "\nDone in {:.1}s. Try next, from {}:",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    for query in QUERIES {
        println!("  lakescore sql \"{}\"", query.replace('"', "\\\""));
    }
    println!("  lakescore lineage training.churn_risk_feedback   # where every label came from");
    println!(
        "  lakescore models show churn_risk                   # the champion's manifest and comparison"
    );
    println!(
        "  lakescore runs nightly                             # the day-2 job run, step by step"
    );
    println!("  lakescore sql            # interactive prompt, \\dt lists tables");
    println!(
        "\nFor psql and BI tools: `lakescore serve`, then\n  psql \"host=127.0.0.1 port=5432 user=analyst dbname=lakehouse\"   # password: analyst (engineer/engineer reads raw too)"
    );
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
