//! CRM exports (Salesforce-style CSV): accounts, contacts and support tickets.

use std::fmt::Write as _;

use chrono::Duration;

use super::{Customer, Day, Generated, NAMES, Random, SUFFIXES, write};

const FIRST_NAMES: [&str; 8] = [
    "Anna", "Jonas", "Léa", "Mateo", "Sofia", "Lukas", "Emma", "Noah",
];
const LAST_NAMES: [&str; 8] = [
    "Schmidt", "García", "Rossi", "Dubois", "Novak", "Jansen", "O'Brien", "Kowalski",
];
const TITLES: [&str; 5] = ["CFO", "Head of IT", "Procurement", "Operations", "CEO"];
const PRIORITIES: [&str; 4] = ["Low", "Normal", "High", "Urgent"];
const SUBJECTS: [&str; 5] = [
    "Login fails after update",
    "\"Invoice wrong, please check\"",
    "Export times out",
    "How do I add users?",
    "\"Slow reports, again\"",
];

/// Day 1 exports every customer; later days export the accounts that changed.
pub(super) fn accounts(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = String::from(
        "\u{feff}account_id,name,industry,is_active,churned,created_at,annual_revenue,notes\n",
    );
    let exported: Vec<u32> = if day.generation.day <= 1 {
        (1..=day.generation.customers).collect()
    } else {
        (1..=day.generation.customers)
            .filter(|_| random.below(10) == 0)
            .collect()
    };
    let with_broken_rows = day.with_broken_rows(exported.len());
    for (i, id) in exported.iter().enumerate() {
        generated.records += 1;
        let name = format!("{} {}", random.pick(&NAMES), random.pick(&SUFFIXES));
        let name = if random.below(5) == 0 {
            format!("\"{name}, {id}\"")
        } else {
            name
        };
        let customer = Customer::of(day.generation.seed, *id);
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
    let path = day
        .dir
        .join(format!("crm/accounts_{}.csv", day.date.format("%Y-%m-%d")));
    write(path, text.as_bytes(), generated)
}

/// Contacts of the accounts: names, emails typed by hand (mixed case, stray spaces) and
/// phone numbers in whatever format the sales rep used. Day 1 exports them all, later days
/// new and changed ones, merged on `contact_id`.
pub(super) fn contacts(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text =
        String::from("contact_id,account_id,first_name,last_name,email,phone,title,updated_at\n");
    let mut rows = Vec::new();
    for id in 1..=day.generation.customers {
        let contacts = 1 + random.below(3);
        for n in 0..contacts {
            if day.generation.day <= 1 || random.below(25) == 0 {
                rows.push((id, n));
            }
        }
    }
    let broken = day.with_broken_rows(rows.len());
    for (i, (id, n)) in rows.iter().enumerate() {
        generated.records += 1;
        let first = random.pick(&FIRST_NAMES);
        let last = random.pick(&LAST_NAMES);
        let company = NAMES[(*id as usize) % NAMES.len()].to_lowercase();
        let email = match random.below(3) {
            0 => format!("{first}.{last}@{company}.example"),
            1 => format!(" {}.{}@{}.EXAMPLE ", first.to_uppercase(), last, company),
            _ => format!("{}{}@{company}.example", &first[..1], last).to_lowercase(),
        };
        let number = 1_000_000 + random.below(9_000_000);
        let phone = match random.below(4) {
            0 => format!("+49 30 {number}"),
            1 => format!("(030) {}-{}", number / 1000, number % 1000),
            2 => format!("0049 30 {number}"),
            _ => format!("030/{number}"),
        };
        let updated = day.date - Duration::days(random.below(60) as i64);
        let contact = format!("CON-{id:06}-{n}");
        let (contact, updated) = match (broken, i) {
            (true, 5) => {
                generated.broken += 1;
                (String::new(), format!("{updated}T10:00:00Z"))
            }
            (true, 9) => {
                generated.broken += 1;
                (contact, String::from("yesterday"))
            }
            _ => (contact, format!("{updated}T10:00:00Z")),
        };
        let _ = writeln!(
            text,
            "{contact},ACC-{id:06},{first},\"{last}\",{email},{phone},{},{updated}",
            random.pick(&TITLES)
        );
    }
    let path = day
        .dir
        .join(format!("crm/contacts_{}.csv", day.date.format("%Y-%m-%d")));
    write(path, text.as_bytes(), generated)
}

/// Support tickets opened that day: customers who barely use the product open the most.
pub(super) fn tickets(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = String::from("ticket_id,account_id,opened_at,priority,status,subject\n");
    let mut opened = Vec::new();
    for id in 1..=day.generation.customers {
        let customer = Customer::of(day.generation.seed, id);
        let chance = 0.05 + 0.5 * (1.0 - customer.engagement).powi(2);
        if random.unit() < chance {
            opened.push(id);
        }
    }
    let broken = day.with_broken_rows(opened.len());
    for (i, id) in opened.iter().enumerate() {
        generated.records += 1;
        let opened_at = format!(
            "{}T{:02}:{:02}:00+01:00",
            day.date,
            random.below(24),
            random.below(60)
        );
        let opened_at = if broken && i == 3 {
            generated.broken += 1;
            String::from("31/02/2026 25:61")
        } else {
            opened_at
        };
        let status = if random.below(3) == 0 {
            "open"
        } else {
            "closed"
        };
        let _ = writeln!(
            text,
            "TCK-{}{i:06},ACC-{id:06},{opened_at},{},{status},{}",
            day.generation.day,
            random.pick(&PRIORITIES),
            random.pick(&SUBJECTS)
        );
    }
    let path = day
        .dir
        .join(format!("crm/tickets_{}.csv", day.date.format("%Y-%m-%d")));
    write(path, text.as_bytes(), generated)
}
