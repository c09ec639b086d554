//! `lakescore vacuum`: delete the files no table version within the retention window
//! needs and the `_staging/` leftovers of killed runs, one line per table.

use lakescore_engine::Lakehouse;
use lakescore_engine::vacuum::{VacuumOptions, VacuumReport, vacuum};

/// Vacuums and prints what was (or, with `--dry-run`, would be) deleted.
pub async fn run(lakehouse: &Lakehouse, options: &VacuumOptions) -> anyhow::Result<()> {
    let report = vacuum(lakehouse, options).await?;
    print!("{}", describe(&report));
    if let Some(broken) = report.tables.iter().find(|t| t.error.is_some()) {
        anyhow::bail!(
            "{} could not be vacuumed: {}",
            broken.table,
            broken.error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// The report as lines: each table with files to delete (or an error), then `_staging`.
pub fn describe(report: &VacuumReport) -> String {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut text = String::new();
    for table in &report.tables {
        match (&table.error, table.files.len()) {
            (Some(error), _) => text.push_str(&format!("{}: not vacuumed: {error}\n", table.table)),
            (None, 0) => {}
            (None, n) => {
                text.push_str(&format!(
                    "{}: {verb} {n} unreferenced file(s)\n",
                    table.table
                ));
                if report.dry_run {
                    for file in &table.files {
                        text.push_str(&format!("  {file}\n"));
                    }
                }
            }
        }
    }
    if !report.staging_folders.is_empty() {
        text.push_str(&format!(
            "_staging: {verb} {} leftover folder(s): {}\n",
            report.staging_folders.len(),
            report.staging_folders.join(", ")
        ));
    }
    text.push_str(&format!(
        "{} table(s) checked, {verb} {} file(s) and {} staging folder(s)\n",
        report.tables.len(),
        report.files(),
        report.staging_folders.len()
    ));
    text
}
