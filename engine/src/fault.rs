//! Fault injection for lakescore's own crash tests: named points in each operation where
//! a test can stop the process (to kill it there, or to change its inputs) or make a
//! write fail, and check that every table stays at a committed version.
//!
//! - `LAKESCORE_FAULT_PAUSE=<point>`: on reaching the point, print `paused at <point>` on
//!   standard error and wait, until the file named by `LAKESCORE_FAULT_RESUME` exists
//!   (then go on) or forever (the test kills the process).
//! - `LAKESCORE_FAULT_FAIL=<point>`: on reaching the point, fail as a write would
//!   (`injected failure at <point>`).
//!
//! Unset, a point costs one environment lookup.

use std::time::Duration;

/// Names the point to pause at.
pub const PAUSE: &str = "LAKESCORE_FAULT_PAUSE";
/// Names the file whose existence ends a pause.
pub const RESUME: &str = "LAKESCORE_FAULT_RESUME";
/// Names the point to fail at.
pub const FAIL: &str = "LAKESCORE_FAULT_FAIL";

/// Pauses or fails here when a test asked for it; returns the injected failure's message.
pub fn point(name: &str) -> Result<(), String> {
    if std::env::var(FAIL).is_ok_and(|p| p == name) {
        return Err(format!("injected failure at {name}"));
    }
    if std::env::var(PAUSE).is_ok_and(|p| p == name) {
        eprintln!("paused at {name}");
        let resume = std::env::var_os(RESUME);
        loop {
            if resume
                .as_ref()
                .is_some_and(|file| std::path::Path::new(file).exists())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// [`point`] for the engine's operations: an injected failure is the storage failure it
/// stands for.
pub fn check(name: &str) -> crate::error::Result<()> {
    point(name).map_err(|cause| crate::error::Error::Storage {
        uri: name.to_string(),
        cause,
    })
}
