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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, Utc};

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

/// Writes one day's extracts under `extracts_dir`.
pub fn generate(extracts_dir: &Path, generation: Generation) -> std::io::Result<Generated> {
    let (y, m, d) = FIRST_DAY;
    let first = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    let date = first + Duration::days(i64::from(generation.day.max(1) - 1));
    let mut random = Random(generation.seed ^ (u64::from(generation.day) << 32));
    let mut generated = Generated::default();
    crm_accounts(extracts_dir, date, generation, &mut random, &mut generated)?;
    erp_invoices(extracts_dir, date, generation, &mut random, &mut generated)?;
    usage_events(extracts_dir, date, generation, &mut random, &mut generated)?;
    if generation.day >= 2 {
        churn_overrides(extracts_dir, date, generation, &mut random, &mut generated)?;
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

/// Day 1 exports every customer; later days export the accounts that changed.
fn crm_accounts(
    dir: &Path,
    date: NaiveDate,
    generation: Generation,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = String::from(
        "\u{feff}account_id,name,industry,is_active,churned,created_at,annual_revenue,notes\n",
    );
    let exported: Vec<u32> = if generation.day <= 1 {
        (1..=generation.customers).collect()
    } else {
        (1..=generation.customers)
            .filter(|_| random.below(10) == 0)
            .collect()
    };
    // Broken rows only where they stay a small share of the file.
    let with_broken_rows = exported.len() >= 50;
    for (i, id) in exported.iter().enumerate() {
        generated.records += 1;
        let name = format!("{} {}", random.pick(&NAMES), random.pick(&SUFFIXES));
        let name = if random.below(5) == 0 {
            format!("\"{name}, {id}\"")
        } else {
            name
        };
        let customer = Customer::of(generation.seed, *id);
        let created = customer.created;
        let zone = ["Z", "+01:00", "-05:00"][random.below(3) as usize];
        // The CRM learns whether a customer churned once its first 180 days are over.
        let (active, churned) = if customer.is_new {
            (true, String::new())
        } else {
            (!customer.churned, customer.churned.to_string())
        };
        let revenue = customer.revenue;
        let industry = customer.industry;
        let notes = match random.below(8) {
            0 => "\"Renewal call booked\nFollow up with finance\"",
            1 => "\"Asked about \"\"enterprise\"\" tier\"",
            _ => "",
        };
        if with_broken_rows && i == 3 {
            generated.broken += 1;
            let _ = writeln!(text, "ACC-{id:06},{name},broken export row");
            continue;
        }
        if with_broken_rows && i == 7 {
            generated.broken += 1;
            let _ = writeln!(
                text,
                "ACC-{id:06},{name},{industry},unknown,{churned},{created}T09:00:00{zone},{revenue:.2},"
            );
            continue;
        }
        let _ = writeln!(
            text,
            "ACC-{id:06},{name},{industry},{active},{churned},{created}T09:00:00{zone},{revenue:.2},{notes}"
        );
    }
    let path = dir.join(format!("crm/accounts_{}.csv", date.format("%Y-%m-%d")));
    write(path, text.as_bytes(), generated)
}

fn erp_invoices(
    dir: &Path,
    date: NaiveDate,
    generation: Generation,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = format!(
        "Bericht RFDEBI00 Offene Posten\r\nStichtag {}\r\n\r\nKunden-Nr.;Name;Rechnung;Datum;Betrag (EUR);Storno\r\n",
        date.format("%d.%m.%Y")
    );
    let invoices = generation.customers.div_ceil(2);
    for i in 0..invoices {
        generated.records += 1;
        let customer = 1 + random.below(u64::from(generation.customers)) as u32;
        let number = generation.day * 1_000_000 + i;
        let credit = random.below(12) == 0;
        let cents = 1_000 + random.below(500_000);
        let amount = format_german(cents, credit);
        let name = random.pick(&ERP_NAMES);
        let storno = if credit { "X" } else { "" };
        let day = if i == 5 {
            generated.broken += 1;
            String::from("31.02.2026")
        } else {
            date.format("%d.%m.%Y").to_string()
        };
        let _ = write!(
            text,
            "{customer:07};{name} KG;R-{number};{day};{amount};{storno}\r\n"
        );
    }
    let bytes: Vec<u8> = text.chars().map(windows_1252_byte).collect();
    let path = dir.join(format!("erp/invoices_{}.csv", date.format("%Y%m%d")));
    write(path, &bytes, generated)
}

/// `1.234,56` or `1.234,56-`.
fn format_german(cents: u64, negative: bool) -> String {
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!(
        "{grouped},{:02}{}",
        cents % 100,
        if negative { "-" } else { "" }
    )
}

/// The generator only writes characters Windows-1252 and Latin-1 share.
fn windows_1252_byte(c: char) -> u8 {
    u8::try_from(u32::from(c)).unwrap_or(b'?')
}

fn usage_events(
    dir: &Path,
    date: NaiveDate,
    generation: Generation,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = String::new();
    let mut i: u64 = 0;
    for customer in 1..=generation.customers {
        let engagement = Customer::of(generation.seed, customer).engagement;
        // About six events a day from the most engaged customers, none from the least.
        let events = (engagement * 6.0 + random.unit()).floor() as u32;
        for _ in 0..events {
            generated.records += 1;
            let seconds = (random.unit() * 300.0).round();
            let at = format!(
                "{}T{:02}:{:02}:00Z",
                date,
                random.below(24),
                random.below(60)
            );
            if i == 11 {
                generated.broken += 1;
                let _ = writeln!(
                    text,
                    "{{\"event_id\": {i}, \"account_id\": \"ACC-{customer:06}\""
                );
            } else {
                let _ = writeln!(
                    text,
                    "{{\"event_id\": {}, \"account_id\": \"ACC-{customer:06}\", \"event\": \"{}\", \"at\": \"{at}\", \"seconds\": {seconds}}}",
                    u64::from(generation.day) * 10_000_000 + i,
                    random.pick(&EVENTS)
                );
            }
            i += 1;
        }
    }
    let path = dir.join(format!("events/{}/events.jsonl", date.format("%Y/%m/%d")));
    write(path, text.as_bytes(), generated)
}

const STAFF: [&str; 4] = [
    "ana.lopez@example.com",
    "ben.weber@example.com",
    "chloe.martin@example.com",
    "dev.patel@example.com",
];

/// Staff's churn overrides: for most new customers, whether they are churning, as the
/// account managers learned it. Stamped with the current time, like a live CRM export, so
/// each corrects the newest prediction made before it.
fn churn_overrides(
    dir: &Path,
    date: NaiveDate,
    generation: Generation,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let corrected_at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let mut text = String::from("customer_id,corrected_label,corrected_by,corrected_at,comment\n");
    for id in 1..=generation.customers {
        let customer = Customer::of(generation.seed, id);
        if !customer.is_new || random.below(10) >= 7 {
            continue;
        }
        generated.records += 1;
        let comment = match (customer.churned, customer.industry) {
            (true, "Energy") => "\"Switching to a cheaper supplier, per call\"",
            (true, _) => "Asked for cancellation terms",
            (false, _) => "",
        };
        let _ = writeln!(
            text,
            "ACC-{id:06},{},{},{corrected_at},{comment}",
            customer.churned,
            random.pick(&STAFF)
        );
    }
    // An account the CRM no longer has, and a label nobody can train on.
    generated.records += 2;
    generated.broken += 2;
    let _ = writeln!(
        text,
        "ACC-999999,true,{},{corrected_at},Merged into another account",
        STAFF[0]
    );
    let _ = writeln!(text, "ACC-000001,maybe,{},{corrected_at},", STAFF[1]);
    let path = dir.join(format!(
        "crm/churn_overrides_{}.csv",
        date.format("%Y-%m-%d")
    ));
    write(path, text.as_bytes(), generated)
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
        assert_eq!(first.files.len(), 3);
        assert_eq!(first.broken, 4);
    }

    #[test]
    fn german_amounts() {
        assert_eq!(format_german(123_456, false), "1.234,56");
        assert_eq!(format_german(10_000, true), "100,00-");
        assert_eq!(format_german(99, false), "0,99");
    }
}
