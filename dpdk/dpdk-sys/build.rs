//! Generates the DPDK bindings against the system DPDK found by `pkg-config libdpdk`.
//!
//! DPDK's hot path (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, `rte_ring_*_burst`, …) is
//! `static inline`: bindgen's `wrap_static_fns` emits a C file with one exported wrapper per
//! inline function, which `cc` compiles with DPDK's own cflags. See docs/dpdk.md.

use std::env;
use std::path::PathBuf;
use std::process::{Command, exit};

const INSTALL_HINT: &str = "install the build dependencies with: \
     sudo apt-get install -y libdpdk-dev libclang-dev pkg-config (or run deploy/install-deps.sh)";

fn fail(what: &str) -> ! {
    eprintln!("\nerror: dpdk-sys: {what}\nhelp: {INSTALL_HINT}\n");
    println!("cargo::error=dpdk-sys: {what}; {INSTALL_HINT}");
    exit(1);
}

fn pkg_config(arg: &str) -> String {
    let out = Command::new("pkg-config")
        .args([arg, "libdpdk"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run pkg-config ({e})")));
    if !out.status.success() {
        fail("pkg-config cannot find libdpdk (DPDK development files are not installed)");
    }
    String::from_utf8(out.stdout).unwrap_or_else(|_| fail("pkg-config printed non-UTF-8 output"))
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo::rerun-if-changed=wrapper.h");
    println!("cargo::rerun-if-changed=shim.c");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    // Raw cflags, not the pkg-config crate's probe: they carry `-include rte_config.h` and
    // `-march=corei7`, which DPDK's headers need.
    let cflags: Vec<String> = pkg_config("--cflags")
        .split_whitespace()
        .map(String::from)
        .collect();
    let libs = pkg_config("--libs");
    // The ring PMD's own API (`rte_eth_from_rings`) is not in libdpdk's link line: drivers are
    // plugins. Linking it resolves to the same file EAL loads from the pmds directory.
    println!("cargo::rustc-link-lib=rte_net_ring");
    for tok in libs.split_whitespace() {
        if let Some(dir) = tok.strip_prefix("-L") {
            println!("cargo::rustc-link-search=native={dir}");
        } else if let Some(lib) = tok.strip_prefix("-l") {
            println!("cargo::rustc-link-lib={lib}");
        }
    }

    // bindgen loads libclang at run time and panics when it cannot: say what to install first.
    std::panic::set_hook(Box::new(|info| {
        fail(&format!(
            "bindgen failed ({info}); libclang (and clang's built-in headers) are needed"
        ))
    }));

    let header = manifest.join("wrapper.h");
    let wrap_c = out_dir.join("static_fns");
    let bindings = bindgen::Builder::default()
        .header(header.to_str().expect("UTF-8 path"))
        .clang_args(cflags.iter().map(String::as_str))
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        .allowlist_function("rte_.*|espada_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|RING_F_.*|SOCKET_ID_ANY")
        .blocklist_item("per_lcore_.*")
        // Packed structs holding align(2) members that bindgen cannot lay out.
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_l2tpv2_combined_msg_hdr")
        .no_debug("rte_flow_item_gtp_psc")
        .derive_default(true)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_c)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen could not parse the DPDK headers: {e}")));
    let _ = std::panic::take_hook();
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));

    let mut build = cc::Build::new();
    build
        .file(wrap_c.with_extension("c"))
        .file(manifest.join("shim.c"))
        .include(&manifest)
        .define("ALLOW_EXPERIMENTAL_API", None)
        .opt_level(3)
        .warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    // The generated wrapper file includes the header by path relative to its own directory.
    build
        .flag("-include")
        .flag(header.to_str().expect("UTF-8 path"));
    build.compile("dpdk_shim");
}
