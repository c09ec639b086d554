//! SAP-style ERP reports: semicolons, Windows-1252, report preamble lines, decimal commas,
//! trailing-minus credit notes and `DD.MM.YYYY` dates; customer numbers are the CRM ids in
//! another format (`ACC-000042` is `0000042`).

use std::fmt::Write as _;

use chrono::Duration;

use super::{Customer, Day, ERP_NAMES, Generated, Random, write};

const CITIES: [(&str, &str); 6] = [
    ("München", "DE"),
    ("Köln", "DE"),
    ("Düsseldorf", "DE"),
    ("Wien", "AT"),
    ("Zürich", "CH"),
    ("Graz", "AT"),
];

/// The customer master (Kundenstamm): every customer on day 1, the changed ones later, with
/// credit limits in decimal commas, `DD.MM.YYYY` dates and `X` for blocked accounts.
pub(super) fn customers(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = format!(
        "Bericht RFDKAG00 Kundenstamm\r\nStichtag {}\r\n\r\nKunden-Nr.;Name;Ort;Land;Kreditlimit (EUR);Angelegt am;Gesperrt\r\n",
        day.date.format("%d.%m.%Y")
    );
    let exported: Vec<u32> = (1..=day.generation.customers)
        .filter(|_| day.generation.day <= 1 || random.below(20) == 0)
        .collect();
    let broken = day.with_broken_rows(exported.len());
    for (i, id) in exported.iter().enumerate() {
        generated.records += 1;
        let customer = Customer::of(day.generation.seed, *id);
        let (city, country) = CITIES[random.below(CITIES.len() as u64) as usize];
        let limit = format_german((customer.revenue * 2.5).round() as u64, false);
        let created = if broken && i == 4 {
            generated.broken += 1;
            String::from("00.13.2025")
        } else {
            (customer.created + Duration::days(3))
                .format("%d.%m.%Y")
                .to_string()
        };
        let blocked = if customer.churned && !customer.is_new {
            "X"
        } else {
            ""
        };
        let _ = write!(
            text,
            "{id:07};{} KG;{city};{country};{limit};{created};{blocked}\r\n",
            random.pick(&ERP_NAMES)
        );
    }
    let bytes: Vec<u8> = text.chars().map(windows_1252_byte).collect();
    let path = day
        .dir
        .join(format!("erp/kunden_{}.csv", day.date.format("%Y%m%d")));
    write(path, &bytes, generated)
}

/// An invoice written, for the payments that settle it.
pub(super) struct Invoice {
    customer: u32,
    number: u32,
    cents: u64,
    credit: bool,
}

/// The open-items report: the day's invoices and credit notes.
pub(super) fn invoices(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<Vec<Invoice>> {
    let mut text = format!(
        "Bericht RFDEBI00 Offene Posten\r\nStichtag {}\r\n\r\nKunden-Nr.;Name;Rechnung;Datum;Betrag (EUR);Storno\r\n",
        day.date.format("%d.%m.%Y")
    );
    let count = day.generation.customers.div_ceil(2);
    let mut invoices = Vec::new();
    for i in 0..count {
        generated.records += 1;
        let customer = 1 + random.below(u64::from(day.generation.customers)) as u32;
        let number = day.generation.day * 1_000_000 + i;
        let credit = random.below(12) == 0;
        let cents = 1_000 + random.below(500_000);
        let amount = format_german(cents, credit);
        let name = random.pick(&ERP_NAMES);
        let storno = if credit { "X" } else { "" };
        let date = if i == 5 {
            generated.broken += 1;
            String::from("31.02.2026")
        } else {
            day.date.format("%d.%m.%Y").to_string()
        };
        let _ = write!(
            text,
            "{customer:07};{name} KG;R-{number};{date};{amount};{storno}\r\n"
        );
        invoices.push(Invoice {
            customer,
            number,
            cents,
            credit,
        });
    }
    let bytes: Vec<u8> = text.chars().map(windows_1252_byte).collect();
    let path = day
        .dir
        .join(format!("erp/invoices_{}.csv", day.date.format("%Y%m%d")));
    write(path, &bytes, generated)?;
    Ok(invoices)
}

/// Incoming payments (Zahlungseingänge): most of the day's invoices paid, some partly,
/// a few reversed with a trailing minus.
pub(super) fn payments(
    day: &Day<'_>,
    invoices: &[Invoice],
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = format!(
        "Bericht RFBELJ00 Zahlungseingaenge\r\nStichtag {}\r\n\r\nBeleg;Kunden-Nr.;Rechnung;Zahldatum;Betrag (EUR)\r\n",
        day.date.format("%d.%m.%Y")
    );
    let paid: Vec<&Invoice> = invoices
        .iter()
        .filter(|invoice| !invoice.credit && random.below(10) < 7)
        .collect();
    let broken = day.with_broken_rows(paid.len());
    for (i, invoice) in paid.iter().enumerate() {
        generated.records += 1;
        let cents = if random.below(6) == 0 {
            invoice.cents / 2
        } else {
            invoice.cents
        };
        let reversed = random.below(40) == 0;
        let amount = if broken && i == 2 {
            generated.broken += 1;
            String::from("12.34.5")
        } else {
            format_german(cents, reversed)
        };
        let _ = write!(
            text,
            "Z-{}{i:06};{:07};R-{};{};{amount}\r\n",
            day.generation.day,
            invoice.customer,
            invoice.number,
            day.date.format("%d.%m.%Y")
        );
    }
    let bytes: Vec<u8> = text.chars().map(windows_1252_byte).collect();
    let path = day
        .dir
        .join(format!("erp/zahlungen_{}.csv", day.date.format("%Y%m%d")));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_amounts() {
        assert_eq!(format_german(123_456, false), "1.234,56");
        assert_eq!(format_german(10_000, true), "100,00-");
        assert_eq!(format_german(99, false), "0,99");
    }
}
