//! `lakescore vacuum`: delete the files no table version within the retention window
//! needs and the `_staging/` leftovers of killed runs, one line per table.

use lakescore_engine::Lakehouse;
use lakescore_engine::storage::vacuum::{VacuumOptions, vacuum};

/// Vacuums and prints what was (or, with `--dry-run`, would be) deleted.
pub async fn run(lakehouse: &Lakehouse, options: &VacuumOptions) -> anyhow::Result<()> {
    let report = vacuum(lakehouse, options).await?;
    println!("{report}");
    if let Some(broken) = report.tables.iter().find(|t| t.error.is_some()) {
        anyhow::bail!(
            "{} could not be vacuumed: {}",
            broken.table,
            broken.error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
