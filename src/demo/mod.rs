//! `lakescore demo`: a complete sample project on generated extracts, run end to end in a
//! local lakehouse, then a summary of what it built and what to try next.

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
"#;

/// Queries the summary suggests; each runs against the demo's tables.
pub const QUERIES: [&str; 5] = [
    "select industry, count(*) as accounts, sum(annual_revenue) as revenue from raw.crm_accounts group by industry order by revenue desc",
    "select a.account_id, a.name, sum(i.betrag_eur) as invoiced from raw.crm_accounts a join raw.erp_invoices i on i.kunden_nr = lpad(substr(a.account_id, 5), 7, '0') group by 1, 2 order by invoiced desc limit 5",
    "select event, count(*) as events, avg(seconds) as avg_seconds from raw.usage_events group by event order by events desc",
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
        crate::ingest::run(&project, lakehouse.clone(), Vec::new()).await?;
        println!(
            "day {day}: ingested in {:.1}s\n",
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
    println!("  lakescore history raw.crm_accounts");
    println!("  lakescore sql            # interactive prompt, \\dt lists tables");
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
