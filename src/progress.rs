//! The spinner every long-running command shows while it works.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A ticking spinner drawn with `template` (indicatif syntax); clear it with
/// `finish_and_clear` before printing the result.
pub fn spinner(template: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
