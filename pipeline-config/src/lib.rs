//! The backbone configuration: schema, parsing and validation into the typed values the
//! dataplane takes. The TOML schema itself arrives with the appliance; for now this crate
//! holds the EAL argument handling that every entry point shares.
#![forbid(unsafe_code)]

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
