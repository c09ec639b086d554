//! The demo's extract generator: deterministic, realistic exports with the quirks of the
//! systems they come from, and a few deliberately broken rows per file.
//!
//! - CRM accounts: CSV, comma, quoted names with commas, notes with embedded newlines,
//!   ISO-8601 timestamps with zones, `true`/`false`, a UTF-8 byte-order mark.
//! - ERP invoices: SAP-style, semicolon, Windows-1252, report preamble lines, decimal comma
//!   and thousands dot, trailing-minus credit notes, `DD.MM.YYYY` dates; customer numbers
//!   are the CRM ids in another format (`ACC-000042` is `0000042`).
//! - Usage events: JSON lines in a cloud-storage-style dated folder layout.
//! - Churn overrides (from day 2): staff corrections of churn predictions exported from the
//!   CRM, stamped with the time they are generated, with a few unusable rows.
//!
//! A planted, learnable signal: every customer has a stable engagement that sets how many
//! usage events it sends. Customers past their first 180 days churned (the CRM's `churned`
//! column) mostly when their engagement was low; for newer customers the CRM does not know
//! yet, and the truth the staff report follows another rule: newcomers in Retail and Energy
//! churn. A model trained on the CRM labels alone misses that; one retrained on the
//! corrections learns it.

mod crm;
mod erp;
mod overrides;
mod usage;

use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Generation {
    /// Number of customers.
    pub customers: u32,
    /// Day number, from 1; each day writes new files.
    pub day: u32,
    /// Random seed; the same seed and day give the same files.
    pub seed: u64,
}

/// Files written for one day.
#[derive(Debug, Default)]
pub struct Generated {
    /// Paths written.
    pub files: Vec<PathBuf>,
    /// Records written, broken ones included.
    pub records: u64,
    /// Records broken on purpose.
    pub broken: u64,
}

const FIRST_DAY: (i32, u32, u32) = (2026, 1, 5);
const NAMES: [&str; 12] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Wonka",
];
const SUFFIXES: [&str; 6] = ["Inc", "GmbH", "Ltd", "SA", "AG", "BV"];
const INDUSTRIES: [&str; 5] = ["Manufacturing", "Retail", "Finance", "Energy", "Software"];
const ERP_NAMES: [&str; 6] = ["Müller", "Schäfer", "Weiß", "Groß", "Köhler", "Jäger"];
const EVENTS: [&str; 4] = ["login", "report", "export", "api_call"];

/// SplitMix64: small, fast and deterministic across platforms.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Days a customer is new: the CRM knows whether older customers churned.
const NEW_CUSTOMER_DAYS: i64 = 180;

/// One customer's stable traits, the same in every extract and on every day.
struct Customer {
    industry: &'static str,
    created: NaiveDate,
    revenue: f64,
    /// 0..1: how much the customer uses the product.
    engagement: f64,
    /// Within its first 180 days on the first extract day.
    is_new: bool,
    /// Whether it churned (or, for a new customer, will).
    churned: bool,
}

impl Customer {
    fn of(seed: u64, id: u32) -> Self {
        let mut random = Random(seed ^ (u64::from(id) << 24) ^ 0x00C0_FFEE);
        let (y, m, d) = FIRST_DAY;
        let first = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        let industry = random.pick(&INDUSTRIES);
        let age = random.below(900) as i64;
        let revenue = 10_000.0 + random.unit() * 2_000_000.0;
        let engagement = random.unit();
        let draw = random.unit();
        let is_new = age < NEW_CUSTOMER_DAYS;
        let churned = if is_new {
            matches!(industry, "Retail" | "Energy")
        } else {
            draw < if engagement < 0.3 { 0.75 } else { 0.08 }
        };
        Self {
            industry,
            created: first - Duration::days(age),
            revenue,
            engagement,
            is_new,
            churned,
        }
    }
}

/// One day of extracts being written.
struct Day<'a> {
    /// The extracts folder.
    dir: &'a Path,
    /// The extracts' business date.
    date: NaiveDate,
    /// What to generate.
    generation: Generation,
}

impl Day<'_> {
    /// Broken rows only where they stay a small share of a file.
    fn with_broken_rows(&self, rows: usize) -> bool {
        rows >= 50
    }
}

/// Writes one day's extracts under `extracts_dir`.
pub fn generate(extracts_dir: &Path, generation: Generation) -> std::io::Result<Generated> {
    let (y, m, d) = FIRST_DAY;
    let first = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    let date = first + Duration::days(i64::from(generation.day.max(1) - 1));
    let mut random = Random(generation.seed ^ (u64::from(generation.day) << 32));
    let mut generated = Generated::default();
    let day = Day {
        dir: extracts_dir,
        date,
        generation,
    };
    crm::accounts(&day, &mut random, &mut generated)?;
    crm::contacts(&day, &mut random, &mut generated)?;
    crm::tickets(&day, &mut random, &mut generated)?;
    erp::customers(&day, &mut random, &mut generated)?;
    let invoices = erp::invoices(&day, &mut random, &mut generated)?;
    erp::payments(&day, &invoices, &mut random, &mut generated)?;
    usage::events(&day, &mut random, &mut generated)?;
    if generation.day >= 2 {
        overrides::churn_overrides(&day, &mut random, &mut generated)?;
    }
    Ok(generated)
}

fn write(path: PathBuf, bytes: &[u8], generated: &mut Generated) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, bytes)?;
    generated.files.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_day_give_the_same_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let generation = Generation {
            customers: 60,
            day: 1,
            seed: 7,
        };
        let first = generate(a.path(), generation).unwrap();
        generate(b.path(), generation).unwrap();
        for file in &first.files {
            let relative = file.strip_prefix(a.path()).unwrap();
            assert_eq!(
                std::fs::read(file).unwrap(),
                std::fs::read(b.path().join(relative)).unwrap()
            );
        }
        assert_eq!(first.files.len(), 7);
        assert_eq!(first.broken, 7);
    }
}
