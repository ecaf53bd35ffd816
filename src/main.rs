//! The `elevate` binary: parse the command line, install tracing, run, map the exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = elevate::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    elevate::cli::run(cli)
}
