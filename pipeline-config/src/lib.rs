//! The backbone configuration: the TOML file format, parsed into typed values and
//! validated into a [`ValidatedConfig`], the only form the dataplane accepts.
//!
//! [`load`] and [`parse`] are the entry points. They deserialize the file with serde
//! (every table rejects unknown fields), then run one validation pass that returns the
//! validated configuration or the first error. Every error names the file; a TOML or type
//! error carries toml's line and column; a validation error names the field by its path
//! (`tunnel[1] "client-b".key`, arrays counted from 0) and quotes the value. CONFIG.md is
//! the field reference.
//!
//! Nothing here panics on any input, and nothing here knows DPDK.
#![forbid(unsafe_code)]

mod document;
mod edit;
mod error;
mod model;
mod running;
mod schema;
mod types;
mod validate;

use std::path::Path;

pub use document::ConfigDocument;
pub use edit::{EditError, RouteEdit, RouteEdits};
pub use error::ConfigError;
pub use model::{
    BgpConfig, FpmConfig, IcmpConfig, Neighbor6Config, NeighborConfig, Outer6, PollConfig,
    PortConfig, PortRef, Route6Config, RouteConfig, RouteTarget, SiteConfig, TunnelBgp,
    TunnelConfig, TunnelRef, ValidatedConfig, HOST_INTERFACE_PREFIX, MAX_INTERFACE_NAME,
};
pub use running::{Change, Difference, FieldChange};
pub use schema::{
    DEFAULT_BFD_INTERVAL_MS, DEFAULT_BFD_MULTIPLIER, DEFAULT_FPM_GRACE, DEFAULT_FPM_LISTEN,
    DEFAULT_ICMP_BURST, DEFAULT_ICMP_RATE, DEFAULT_IDLE_SLEEP_MAX_US, DEFAULT_MAX_PREFIX_LEN,
    DEFAULT_POLL, DEFAULT_PORT_MTU, DEFAULT_PROBE_INTERVAL_MS, DEFAULT_PROBE_MISSES,
    DEFAULT_QUEUES, DEFAULT_TTL, FPM_GRACE_RANGE, ICMP_LIMIT_RANGE, IDLE_SLEEP_MAX_US_RANGE,
    MIN_INNER_MTU, PORT_MTU_RANGE, QUEUES_RANGE,
};
pub use types::{Df, Dscp, MacAddr, ParseMacError, PollMode, Role, Ttl, TunnelMode, UnknownWord};

/// Read, parse and validate the configuration file at `path`; errors name it as given.
pub fn load(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse and validate configuration `text`; `origin` names it in errors (a file name).
pub fn parse(text: &str, origin: &str) -> Result<ValidatedConfig, ConfigError> {
    let raw: schema::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::syntax(origin, text, &e))?;
    validate::validate(&raw, origin)
}

/// EAL arguments for runs and tests that need no NIC and no hugepages: a private
/// `file_prefix` keeps concurrent processes apart.
pub fn eal_args_no_nic(file_prefix: &str) -> Vec<String> {
    vec![
        "backbone".to_owned(),
        "--no-huge".to_owned(),
        "--no-pci".to_owned(),
        "--no-shconf".to_owned(),
        "--no-telemetry".to_owned(),
        "-m".to_owned(),
        "256".to_owned(),
        format!("--file-prefix={file_prefix}"),
        "--log-level=lib.eal:error".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_nic_args_carry_the_prefix_and_no_hugepages() {
        let args = eal_args_no_nic("t1");
        assert!(args.iter().any(|a| a == "--file-prefix=t1"));
        assert!(args.iter().any(|a| a == "--no-huge"));
        assert_eq!(args[0], "backbone");
    }
}
