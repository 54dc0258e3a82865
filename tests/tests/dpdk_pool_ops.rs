//! A mempool whose ops allow one producer or one consumer only is refused with a typed
//! error: mbufs are allocated and freed on several threads at once. EAL's
//! `--mbuf-pool-ops-name` is how a configuration selects such ops. One EAL per process: one
//! test.

use backbone_tests::file_prefix;
use dataplane::dpdk::{DpdkError, Eal, Mempool};

#[test]
fn single_producer_or_consumer_pool_ops_are_refused() {
    let mut args = pipeline_config::eal_args_no_nic(&file_prefix("pool-ops"));
    args.push("--mbuf-pool-ops-name=ring_sp_sc".into());
    let eal = Eal::init(&args).expect("EAL starts");
    for _ in 0..2 {
        // Twice under one name: the refused pool was freed, so the second attempt meets the
        // same refusal and not "exists already".
        match Mempool::new(&eal, "sp_sc_pool", 511, 0, Mempool::default_data_room()) {
            Err(DpdkError::PoolOps { name, ops }) => {
                assert_eq!(name, "sp_sc_pool");
                assert_eq!(ops, "ring_sp_sc");
            }
            other => panic!("expected a PoolOps error, got {other:?}"),
        }
    }
    assert_eq!(eal.mbufs_in_use(), 0);
}
