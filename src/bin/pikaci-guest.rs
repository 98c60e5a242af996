//! The guest agent: `pikaci-guest run REQUEST`. See `pikaci::guest`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pikaci::cancel::Cancel;
use pikaci::guest::{Agent, run_request};

/// Runs a pikaci job request inside a guest (protocol v1).
#[derive(Parser)]
#[command(name = "pikaci-guest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job in REQUEST and write ARTIFACTS/{guest.log,result.json}.
    Run {
        request: PathBuf,
        #[arg(long, default_value = pikaci::guest_layout::ARTIFACTS)]
        artifacts: PathBuf,
        /// Do not copy the job's output to stdout.
        #[arg(long)]
        quiet: bool,
        /// Power the machine off afterwards (the agent is a microVM's init).
        #[arg(long)]
        poweroff: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            request,
            artifacts,
            quiet,
            poweroff,
        } => {
            let cancel = Cancel::new();
            if let Err(e) = cancel.install_signal_handlers() {
                eprintln!("pikaci-guest: cannot handle signals: {e}");
            }
            let agent = Agent {
                artifacts,
                passwd: PathBuf::from("/etc/passwd"),
                echo: !quiet,
            };
            let (result, code) = run_request(&agent, &request, &cancel);
            if let Some(message) = &result.message {
                eprintln!("pikaci-guest: {message}");
            }
            if poweroff {
                pikaci::guest::power_off();
            }
            ExitCode::from(code)
        }
    }
}
