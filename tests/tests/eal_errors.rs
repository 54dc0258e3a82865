//! EAL start-up from bad arguments and lookups of ports that do not exist give typed errors,
//! not a panic or an abort. One EAL per process: everything runs in one test, in order.

use backbone_tests::file_prefix;
use dataplane::dpdk::{DpdkError, Eal, Mempool, Port, PortConfig};

#[test]
fn bad_arguments_and_missing_ports_are_typed_errors() {
    // An option EAL does not know.
    let mut bad = pipeline_config::eal_args_no_nic(&file_prefix("eal-bad"));
    bad.push("--no-such-eal-option".into());
    match Eal::init(&bad) {
        Err(DpdkError::EalInit { errno, args, .. }) => {
            assert_ne!(errno, 0, "rte_errno is carried");
            assert!(
                args.contains("--no-such-eal-option"),
                "the arguments are named: {args}"
            );
        }
        other => panic!("expected EalInit error, got {other:?}"),
    }
    // A NUL byte cannot reach C.
    assert!(matches!(
        Eal::init(&["backbone", "bad\0arg"]),
        Err(DpdkError::NulInArgument(_))
    ));

    // After a refused start, a good one works.
    let eal =
        Eal::init(&pipeline_config::eal_args_no_nic(&file_prefix("eal-ok"))).expect("EAL starts");
    assert!(Eal::version().starts_with("DPDK"), "{}", Eal::version());
    // A second start in the same process is refused.
    assert!(matches!(
        Eal::init(&pipeline_config::eal_args_no_nic("other")),
        Err(DpdkError::EalAlreadyRunning)
    ));

    // Ports that do not exist.
    match Port::id_by_name(&eal, "net_nonexistent9") {
        Err(DpdkError::PortNotFound { name, .. }) => assert_eq!(name, "net_nonexistent9"),
        other => panic!("expected PortNotFound, got {other:?}"),
    }
    let pool =
        Mempool::new(&eal, "eal_err_pool", 511, 0, Mempool::default_data_room()).expect("pool");
    match Port::start(&eal, 7, &PortConfig::default(), &pool) {
        Err(DpdkError::PortIdInvalid { port: 7, count: 0 }) => {}
        other => panic!("expected PortIdInvalid, got {other:?}"),
    }
    // A pool name used twice is a typed error carrying rte_errno (EEXIST).
    match Mempool::new(&eal, "eal_err_pool", 511, 0, Mempool::default_data_room()) {
        Err(DpdkError::Mempool { errno, name, .. }) => {
            assert_eq!(errno, 17, "EEXIST");
            assert_eq!(name, "eal_err_pool");
        }
        other => panic!("expected Mempool error, got {other:?}"),
    }
}
