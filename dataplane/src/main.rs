//! `backbone`: the edge-router appliance.
//!
//! `backbone smoke [-- EAL ARGS]` starts EAL, sets a loopback `net_ring` port up, sends
//! bursts through it and prints what came back and the port counters: a check that the
//! DPDK layer works on this machine. (`run` and `check` arrive with the appliance.)

use dataplane::buffer::PacketBuf;
use dataplane::dpdk::{Burst, Eal, Mempool, Port, PortConfig, BURST_MAX};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: backbone smoke [--bursts N] [-- EAL ARGS]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().collect();
    let (ours, eal_extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[1..i], Some(&args[i + 1..])),
        None => (&args[1..], None),
    };
    match ours.first().map(String::as_str) {
        Some("smoke") => {}
        _ => return usage(),
    }
    let mut bursts = 1000u32;
    let mut it = ours[1..].iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().map(|v| v.parse::<u32>())) {
            ("--bursts", Some(Ok(n))) => bursts = n,
            _ => return usage(),
        }
    }
    let mut eal_args = vec!["backbone".to_owned()];
    match eal_extra {
        Some(extra) => eal_args.extend(extra.iter().cloned()),
        None => {
            eal_args = pipeline_config::eal_args_no_nic(&format!("smoke{}", std::process::id()));
            eal_args.push("--vdev=net_ring0".into());
        }
    }
    match smoke(&eal_args, bursts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backbone: {e}");
            ExitCode::FAILURE
        }
    }
}

fn smoke(eal_args: &[String], bursts: u32) -> Result<(), Box<dyn std::error::Error>> {
    let eal = Eal::init(eal_args)?;
    println!(
        "{} with {} lcore(s), {} port(s)",
        Eal::version(),
        eal.lcore_count(),
        eal.port_count()
    );
    let pool = Mempool::new(&eal, "smoke_pool", 4095, 256, Mempool::default_data_room())?;
    let port = Port::start(&eal, 0, &PortConfig::default(), &pool)?;
    println!(
        "port 0 {} mac {} mtu {} link {:?}",
        port.name(),
        port.mac()?,
        port.mtu()?,
        port.link()?
    );
    let (mut rx, mut tx) = port.take_queues()?;
    let frame: Vec<u8> = (0..64u8).collect();
    let (mut sent, mut received, mut intact) = (0u64, 0u64, 0u64);
    let start = std::time::Instant::now();
    for _ in 0..bursts {
        let mut b = Burst::new();
        while !b.is_full() {
            let Some(m) = pool.alloc_with(&frame) else {
                break;
            };
            if b.push(m).is_err() {
                break;
            }
        }
        sent += tx[0].tx_burst(&mut b) as u64;
        drop(b); // frees what TX did not take
        let mut got = Burst::new();
        received += rx[0].rx_burst(&mut got) as u64;
        intact += got.iter().filter(|m| m.data() == frame.as_slice()).count() as u64;
    }
    let elapsed = start.elapsed();
    drop((rx, tx));
    let stats = port.stats()?;
    println!(
        "sent {sent}, received {received} ({intact} intact) in {} bursts of up to {BURST_MAX}, {:.2} Mpps round trip",
        bursts,
        received as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!("port counters: {stats:?}");
    drop(port);
    println!("mbufs still in use: {}", eal.mbufs_in_use());
    if received != sent || intact != received || eal.mbufs_in_use() != 0 {
        return Err("smoke run lost, changed or leaked packets".into());
    }
    println!("smoke run OK");
    Ok(())
}
