//! Product-usage events: JSON lines in a cloud-storage-style dated folder layout.

use std::fmt::Write as _;

use super::{Customer, Day, EVENTS, Generated, Random, write};

pub(super) fn events(
    day: &Day<'_>,
    random: &mut Random,
    generated: &mut Generated,
) -> std::io::Result<()> {
    let mut text = String::new();
    let mut i: u64 = 0;
    for customer in 1..=day.generation.customers {
        let engagement = Customer::of(day.generation.seed, customer).engagement;
        // About six events a day from the most engaged customers, none from the least.
        let events = (engagement * 6.0 + random.unit()).floor() as u32;
        for _ in 0..events {
            generated.records += 1;
            let seconds = (random.unit() * 300.0).round();
            let at = format!(
                "{}T{:02}:{:02}:00Z",
                day.date,
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
                    u64::from(day.generation.day) * 10_000_000 + i,
                    random.pick(&EVENTS)
                );
            }
            i += 1;
        }
    }
    let path = day.dir.join(format!(
        "events/{}/events.jsonl",
        day.date.format("%Y/%m/%d")
    ));
    write(path, text.as_bytes(), generated)
}
