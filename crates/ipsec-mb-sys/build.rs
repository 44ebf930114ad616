//! Generates the intel-ipsec-mb bindings against the system header (Debian `libipsec-mb-dev`,
//! `/usr/include/intel-ipsec-mb.h`) and links `libIPSec_MB`. Only what the safe layer uses is
//! bound: the manager's allocation and run-time architecture selection, the GCM key and
//! context structures (the GCM functions are pointers in the manager).

use std::env;
use std::path::PathBuf;
use std::process::exit;

const HEADER: &str = "/usr/include/intel-ipsec-mb.h";
const INSTALL_HINT: &str = "install it with: sudo apt-get install -y libipsec-mb-dev libclang-dev \
     (or run deploy/install-deps.sh)";

fn fail(what: &str) -> ! {
    eprintln!("\nerror: ipsec-mb-sys: {what}\nhelp: {INSTALL_HINT}\n");
    println!("cargo::error=ipsec-mb-sys: {what}; {INSTALL_HINT}");
    exit(1);
}

fn main() {
    println!("cargo::rerun-if-changed={HEADER}");
    if !std::path::Path::new(HEADER).exists() {
        fail(&format!(
            "{HEADER} not found (intel-ipsec-mb development files)"
        ));
    }
    println!("cargo::rustc-link-lib=IPSec_MB");
    std::panic::set_hook(Box::new(|info| {
        fail(&format!("bindgen failed ({info}); libclang is needed"))
    }));
    let bindings = bindgen::Builder::default()
        .header(HEADER)
        // The header aligns its structures (64 bytes for `gcm_key_data`) under `LINUX`, as the
        // library was built.
        .clang_arg("-DLINUX")
        .allowlist_function("alloc_mb_mgr|free_mb_mgr|init_mb_mgr_auto|imb_get_version_str")
        .allowlist_type("IMB_MGR|IMB_ARCH|gcm_key_data|gcm_context_data")
        .allowlist_var("IMB_ARCH_.*|IMB_GCM_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen could not parse {HEADER}: {e}")));
    let _ = std::panic::take_hook();
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));
}
