//! `lakescore demo`: a complete sample project on generated extracts and SQL models, run
//! end to end in a local lakehouse, then a summary of what it built and what to try next.

mod generate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lakescore_engine::output::{Destination, OutputFormat};
use lakescore_engine::{Lakehouse, Project};

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
created_at = "timestamp"
annual_revenue = "decimal(18,2)"
notes = "string"

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

# Product usage events dropped by the app as JSON lines, one folder per day.
[[source]]
name = "usage_events"
path = "extracts/events/*/*/*/events.jsonl"
format = "json"
table = "raw.usage_events"

# The nightly pipeline: `lakescore run nightly` runs it now (the demo's day 2 does),
# `lakescore scheduler` every night at 03:00 Berlin time.
[[job]]
name = "nightly"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
retries = 1
retry_delay = "1m"
steps = [{ ingest = true }, { transform = true }, { check = true }]

# Extracts arrive daily; curated tables follow their inputs within the hour.
[freshness.tables]
"raw.*" = { max_age = "26h" }
"curated.*" = { max_input_lag = "1h" }
"#;

/// The demo's SQL models: file name and text.
const MODELS: [(&str, &str); 3] = [
    (
        "customers.sql",
        r#"/*
description = "One row per customer: CRM accounts reconciled with their ERP invoices"
materialized = "merge"
key = ["customer_id"]

[columns]
customer_id = "CRM account id, e.g. ACC-000042"
erp_customer_no = "The same customer's number in the ERP (Kunden-Nr.)"
invoiced_eur = "Sum of the customer's invoices, cancellations (Storno) excluded"

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
       a.created_at,
       a.annual_revenue,
       lpad(substr(a.account_id, 5), 7, '0') AS erp_customer_no,
       coalesce(sum(CASE WHEN i.storno THEN 0 ELSE i.betrag_eur END), 0) AS invoiced_eur,
       count(i.rechnung) AS invoices
FROM raw.crm_accounts a
LEFT JOIN raw.erp_invoices i ON i.kunden_nr = lpad(substr(a.account_id, 5), 7, '0')
GROUP BY 1, 2, 3, 4, 5, 6, 7
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
description = "Customers with their usage: the features a risk model scores"
materialized = "view"
*/
SELECT c.customer_id, c.industry, c.is_active, c.annual_revenue, c.invoiced_eur, c.invoices,
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
    "select industry, count(*) as customers, sum(invoiced_eur) as invoiced from curated.customers group by industry order by invoiced desc",
    "select customer_id, events, invoiced_eur from curated.customer_features order by events desc limit 5",
    "select model, test, status, failing_rows from ops.test_results order by tested_at desc limit 10",
    "select _source_file, _source_row, \"column\", error from quarantine.raw_crm_accounts",
    "select (select count(*) from table_at('raw.erp_invoices', 1)) as after_day_1, (select count(*) from raw.erp_invoices) as now",
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
    std::fs::write(&project_file, PROJECT_FILE)?;
    for (file, sql) in MODELS {
        std::fs::write(options.dir.join("models").join(file), sql)?;
    }
    let project = Project::load(&project_file)?;
    let lakehouse = Arc::new(Lakehouse::for_project(&project)?);
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
            crate::ingest::run(&project, lakehouse.clone(), Vec::new()).await?;
            crate::transform::run(&project, lakehouse.clone(), Vec::new(), false).await?;
        } else {
            // From day 2 on, the nightly job does the same, with run history and checks.
            crate::jobs::run(&project, lakehouse.clone(), "nightly", None).await?;
        }
        println!(
            "day {day}: ingested and transformed in {:.1}s\n",
            step.elapsed().as_secs_f64()
        );
    }

    println!("Tables:");
    crate::write_table_listing(&lakehouse, OutputFormat::Table, &Destination::Stdout).await?;
    print_next_steps(&project.dir, started);
    Ok(())
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
    println!("  lakescore lineage curated.customers");
    println!("  lakescore history raw.crm_accounts");
    println!(
        "  lakescore runs nightly   # the day-2 job run; `lakescore run nightly` runs it again"
    );
    println!("  lakescore sql            # interactive prompt, \\dt lists tables");
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
