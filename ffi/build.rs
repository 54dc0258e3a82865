//! Generates the DPDK bindings from the system headers that pkg-config finds, and compiles
//! C wrappers for DPDK's `static inline` functions (burst I/O, mbuf helpers) plus a small shim.
//!
//! A missing dependency stops the build with one line that names the Debian package.

use std::env;
use std::path::PathBuf;

fn fail(line: &str) -> ! {
    // cargo shows `cargo::error` lines as the build's error; the panic keeps older cargos failing.
    println!("cargo::error={line}");
    eprintln!("error: {line}");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => fail(&format!(
            "DPDK >= 22.11 not found by pkg-config ({}): install it with `apt-get install libdpdk-dev pkg-config` or run scripts/setup.sh",
            e.to_string().lines().next().unwrap_or("libdpdk missing")
        )),
    };

    // The compiler flags exactly as pkg-config gives them (-I, -include rte_config.h, -march).
    let cflags: Vec<String> = match std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        _ => fail("`pkg-config --cflags libdpdk` failed: install it with `apt-get install libdpdk-dev pkg-config`"),
    };

    if let Err(e) = std::panic::catch_unwind(clang_sys_probe) {
        drop(e);
        fail("libclang not found: install it with `apt-get install libclang-dev clang`");
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wrappers = out_dir.join("static_wrappers");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(cflags.iter())
        .clang_arg("-I.")
        .allowlist_function("rte_.*|backbone_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // Packed protocol headers that bindgen cannot lay out: nothing here reads them.
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_gtp_.*|rte_l2tpv2_.*|rte_flow_item_.*")
        .blocklist_function("rte_.*_bulk_.*_v3") // not present in every build
        .derive_debug(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen could not read the DPDK headers: {e}")));
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));

    let mut cc = cc::Build::new();
    cc.file(wrappers.with_extension("c"))
        .file("shim.c")
        .include(".")
        .include(env::current_dir().expect("build script has a current dir"))
        .opt_level(3)
        .warnings(false);
    for flag in &cflags {
        cc.flag(flag);
    }
    for path in &dpdk.include_paths {
        cc.include(path);
    }
    cc.compile("dpdk_static_wrappers");
}

/// bindgen panics inside clang-sys when libclang is absent; find out before it does.
fn clang_sys_probe() {
    let candidates = [
        "/usr/lib/llvm-14/lib",
        "/usr/lib/llvm-15/lib",
        "/usr/lib/llvm-16/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib",
    ];
    if env::var_os("LIBCLANG_PATH").is_some() {
        return;
    }
    let found = candidates.iter().any(|dir| {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries.flatten().any(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with("libclang") && n.contains(".so"))
                })
            })
            .unwrap_or(false)
    });
    if !found {
        panic!("libclang missing");
    }
}
