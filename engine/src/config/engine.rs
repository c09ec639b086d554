//! `[engine]`: where transforms and scoring run: in this process (`local`, the default) or
//! on an Apache DataFusion Ballista cluster (`ballista`), whose scheduler is named here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

/// `[engine]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Where plans run.
    #[serde(default)]
    pub mode: EngineMode,
    /// The Ballista scheduler to send plans to (`mode = "ballista"`).
    pub scheduler: Option<SchedulerAddress>,
    /// How many tasks a scan of a table is split into on the cluster (by file and byte
    /// range); default: the cores of the machine that plans. Set it to the cluster's
    /// executors × their concurrent tasks so every task slot has work.
    pub partitions: Option<usize>,
}

/// Where plans run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    /// In this process, on every core of this machine.
    #[default]
    Local,
    /// On a Ballista cluster: this process plans and commits to Delta, executors run.
    Ballista,
}

impl FromStr for EngineMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "local" => Ok(Self::Local),
            "ballista" => Ok(Self::Ballista),
            other => Err(format!(
                "engine '{other}' is not one of: local (this process), ballista (a cluster)"
            )),
        }
    }
}

/// A Ballista scheduler: `df://host:port` for a cluster, or `standalone` for a scheduler
/// and an executor inside this process (to try the cluster path on one machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulerAddress {
    /// A scheduler and executor started inside this process.
    Standalone,
    /// A running scheduler, written `df://host:port`.
    Remote {
        /// Its host name or address.
        host: String,
        /// Its port.
        port: u16,
    },
}

/// The port a Ballista scheduler listens on unless told otherwise.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

impl FromStr for SchedulerAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "standalone" {
            return Ok(Self::Standalone);
        }
        let usage = "write it as df://host:port (e.g. df://scheduler.internal:50050), or `standalone` for an in-process cluster";
        let Some(rest) = text.strip_prefix("df://") else {
            return Err(format!(
                "scheduler '{text}' is not a Ballista address: {usage}"
            ));
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => {
                let port: u16 = port.parse().map_err(|_| {
                    format!(
                        "scheduler '{text}': port '{port}' is not a number from 1 to 65535: {usage}"
                    )
                })?;
                (host, port)
            }
            None => (rest, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("scheduler '{text}' names no host: {usage}"));
        }
        Ok(Self::Remote {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for SchedulerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standalone => f.write_str("standalone"),
            Self::Remote { host, port } => write!(f, "df://{host}:{port}"),
        }
    }
}

impl<'de> Deserialize<'de> for SchedulerAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl EngineConfig {
    /// The scheduler of a `ballista` engine, or None for `local`.
    pub fn cluster(&self) -> Option<&SchedulerAddress> {
        match self.mode {
            EngineMode::Local => None,
            EngineMode::Ballista => self.scheduler.as_ref(),
        }
    }

    /// A `ballista` engine names its scheduler; the message says what to add.
    pub fn check(&self) -> Result<(), String> {
        if self.partitions == Some(0) {
            return Err(String::from(
                "[engine] partitions must be at least 1 (leave it out for one per core)",
            ));
        }
        if self.mode == EngineMode::Ballista && self.scheduler.is_none() {
            return Err(String::from(
                "[engine] mode = \"ballista\" needs scheduler = \"df://host:50050\" (or \"standalone\" for an in-process cluster)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_are_read_with_a_default_port() {
        assert_eq!(
            "df://sched:7000".parse(),
            Ok(SchedulerAddress::Remote {
                host: "sched".into(),
                port: 7000
            })
        );
        assert_eq!(
            "df://sched".parse(),
            Ok(SchedulerAddress::Remote {
                host: "sched".into(),
                port: DEFAULT_SCHEDULER_PORT
            })
        );
        assert_eq!("standalone".parse(), Ok(SchedulerAddress::Standalone));
        let address: SchedulerAddress = "df://sched".parse().unwrap();
        assert_eq!(address.to_string(), "df://sched:50050");
        let error = "http://sched:50050"
            .parse::<SchedulerAddress>()
            .unwrap_err();
        assert!(error.contains("not a Ballista address"), "{error}");
        let error = "df://sched:http".parse::<SchedulerAddress>().unwrap_err();
        assert!(error.contains("port 'http'"), "{error}");
        let error = "df://:50050".parse::<SchedulerAddress>().unwrap_err();
        assert!(error.contains("names no host"), "{error}");
    }
}
