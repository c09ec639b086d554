//! Churn overrides exported from the CRM: account managers' corrections of churn
//! predictions.

use std::fmt::Write as _;

use chrono::Utc;

use super::{Customer, Day, Generated, Random, write};

const STAFF: [&str; 4] = [
    "ana.lopez@example.com",
    "ben.weber@example.com",
    "chloe.martin@example.com",
    "dev.patel@example.com",
];

/// Staff's churn overrides: for most new customers, whether they are churning, as the
/// account managers learned it. Stamped with the current time, like a live CRM export, so
/// each corrects the newest prediction made before it.
pub(super) fn churn_overrides(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let corrected_at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let mut text = String::from("customer_id,corrected_label,corrected_by,corrected_at,comment\n");
    for id in 1..=day.generation.customers {
        let customer = Customer::of(day.generation.seed, id);
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
    let path = day.dir.join(format!(
        "crm/churn_overrides_{}.csv",
        day.date.format("%Y-%m-%d")
    ));
    write(path, text.as_bytes(), generated)
}
