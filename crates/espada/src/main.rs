//! `espada`: the daemon and its operator CLI.
//!
//! ```text
//! espada check --config site.yaml          validate a configuration without starting
//! espada run   --config site.yaml          run the appliance (SIGINT/SIGTERM stop it)
//! espada show  sa [SPI] | tunnels | drops | workers  [--json] [--socket PATH]
//! ```

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand, ValueEnum};
use espada_admin::render::{RenderOptions, render_json, render_table_with};
use espada_admin::{AdminClient, Request};
use tracing::warn;

#[derive(Parser)]
#[command(name = "espada", version, about = "IPsec VPN concentrator on DPDK")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a site configuration and print what is wrong, with file, line and column.
    Check {
        /// The site configuration (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the appliance in the foreground.
    Run {
        /// The site configuration (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Extra DPDK EAL argument (repeatable), appended to the configuration's `dpdk.args`.
        #[arg(long = "eal", allow_hyphen_values = true)]
        eal: Vec<String>,
        /// Log lines as text (coloured only when stderr is a terminal) or as one JSON object
        /// per line, for collectors.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Show the state of the running appliance.
    Show {
        #[command(subcommand)]
        what: Show,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        /// Admin socket of the daemon.
        #[arg(long, global = true, default_value = "/run/espada/admin.sock")]
        socket: PathBuf,
    },
    /// Start IKEv2 for a negotiated tunnel now.
    Initiate {
        /// Tunnel name.
        tunnel: String,
        /// Admin socket of the daemon.
        #[arg(long, default_value = "/run/espada/admin.sock")]
        socket: PathBuf,
    },
    /// Rekey a negotiated tunnel's CHILD_SA (default) or IKE SA.
    Rekey {
        /// Tunnel name.
        tunnel: String,
        /// Rekey the IKE SA.
        #[arg(long, conflicts_with = "child")]
        ike: bool,
        /// Rekey the CHILD_SA (the default).
        #[arg(long)]
        child: bool,
        /// Admin socket of the daemon.
        #[arg(long, default_value = "/run/espada/admin.sock")]
        socket: PathBuf,
    },
    /// Delete a negotiated tunnel's IKE SA and CHILD_SAs (a `start: start` tunnel comes back
    /// only by `espada initiate` or the peer).
    Clear {
        /// Tunnel name.
        tunnel: String,
        /// Admin socket of the daemon.
        #[arg(long, default_value = "/run/espada/admin.sock")]
        socket: PathBuf,
    },
}

#[derive(Subcommand)]
enum Show {
    /// SAs with both directions, counters, lifetimes (optionally one SPI, hex 0x… or decimal).
    Sa {
        /// Only this SPI.
        spi: Option<String>,
    },
    /// Tunnels with both SPIs and traffic counters.
    Tunnels,
    /// The IKE state of every negotiated tunnel: SPIs, next rekeys, last DPD.
    Ike,
    /// Drop counters by reason and recent unknown-SPI events.
    Drops {
        /// List reasons at zero too.
        #[arg(long)]
        all: bool,
    },
    /// Per-worker load, handoff and counters.
    Workers,
}

/// How `espada run` writes its log lines to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Installs the log subscriber: level from `ESPADA_LOG` (default `info`), lines on stderr,
/// never colour codes into a file, a pipe or journald.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESPADA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn parse_spi(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("invalid SPI {s:?}: expected a 32-bit number, decimal or 0x-hex"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match espada_config::load(&config) {
            Ok(l) => {
                for w in &l.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: configuration OK ({} tunnels)",
                    config.display(),
                    l.config.tunnels.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run {
            config,
            eal,
            log_format,
        } => {
            init_logging(log_format);
            let loaded = match espada_config::load(&config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            for w in &loaded.warnings {
                warn!("{w}");
            }
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
                    eprintln!("cannot install signal handler: {e}");
                    return ExitCode::FAILURE;
                }
            }
            match espada::appliance::run(&loaded.config, &eal, stop) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("espada: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Show { what, json, socket } => {
            let (req, opts) = match what {
                Show::Sa { spi } => match spi.as_deref().map(parse_spi).transpose() {
                    Ok(spi) => (Request::ShowSa { spi }, RenderOptions::default()),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                Show::Tunnels => (Request::ShowTunnels, RenderOptions::default()),
                Show::Ike => (Request::ShowIke, RenderOptions::default()),
                Show::Drops { all } => (
                    Request::ShowDrops,
                    RenderOptions {
                        all_drop_reasons: all,
                    },
                ),
                Show::Workers => (Request::ShowWorkers, RenderOptions::default()),
            };
            call(&socket, req, json, &opts)
        }
        Cmd::Initiate { tunnel, socket } => call(
            &socket,
            Request::Initiate { tunnel },
            false,
            &RenderOptions::default(),
        ),
        Cmd::Rekey {
            tunnel,
            ike,
            socket,
            ..
        } => call(
            &socket,
            Request::Rekey { tunnel, ike },
            false,
            &RenderOptions::default(),
        ),
        Cmd::Clear { tunnel, socket } => call(
            &socket,
            Request::Clear { tunnel },
            false,
            &RenderOptions::default(),
        ),
    }
}

/// Sends one request to the daemon and prints the answer.
fn call(socket: &std::path::Path, req: Request, json: bool, opts: &RenderOptions) -> ExitCode {
    let resp = AdminClient::connect(socket)
        .map_err(|e| e.to_string())
        .and_then(|mut c| c.call(req).map_err(|e| e.to_string()));
    match resp {
        Ok(r) => {
            print!(
                "{}",
                if json {
                    render_json(&r) + "\n"
                } else {
                    render_table_with(&r, opts)
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("espada: {e}");
            ExitCode::FAILURE
        }
    }
}
