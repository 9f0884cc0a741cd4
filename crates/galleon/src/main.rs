//! The `galleon` binary: every CLI verb, and the processes a home runs — the control plane (`serve`),
//! the instance agent (`agent`) and the sample app (`sample-app`) — all in one executable, so a plain
//! `cargo build` is enough to run the demo and the tests.

mod sample_app;

use std::process::ExitCode;

use galleon_cli::{Command, Parsed};

fn main() -> ExitCode {
    let cli = match galleon_cli::parse(std::env::args_os()) {
        Parsed::Run(cli) => cli,
        Parsed::Exit(code) => return exit(code),
    };
    match cli.command {
        Command::Serve => exit(serve(cli.global.home)),
        Command::Agent { dir } => exit(galleon_runtime::agent_main(&dir)),
        Command::Dataplane => exit(dataplane(cli.global.home)),
        Command::SampleApp => exit(sample_app::main()),
        _ => exit(galleon_cli::run(cli)),
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GALLEON_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

/// The data plane of a home: listeners, probes, health, drains, metrics (started by `serve`).
fn dataplane(home: std::path::PathBuf) -> i32 {
    init_logs();
    // Control and probes only: client connections are served on the data plane's own per-core workers.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: cannot start the runtime: {e}");
            return 1;
        }
    };
    let opts = galleon_lb::RunOptions::new(home.join("dataplane"), home.join("dataplane.sock"));
    match rt.block_on(galleon_lb::run(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ERROR: {e}");
            1
        }
    }
}

fn serve(home: std::path::PathBuf) -> i32 {
    init_logs();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(galleon_server::serve(galleon_server::ServeOptions { home })) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            1
        }
    }
}
