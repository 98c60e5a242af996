//! The command line: clap definitions in `args`, one file per command family.

mod args;
mod complete;
mod context;
mod hosts;
mod image;
mod init;
mod inspect;
mod maintain;
mod man;
mod render;
mod run;
mod setup;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command, ImageCommand, RenderCommand};

use crate::error::Error;

/// The variable through which the shell asks for completions.
pub(crate) const COMPLETE_VAR: &str = "PIKACI_COMPLETE";

/// Parses the command line, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // `PIKACI_COMPLETE=SHELL pikaci -- ARGS` (what `pikaci completions SHELL` sets up)
    // answers with completions and exits. Not clap's default `COMPLETE`: a variable that
    // common must not turn a run into a completion.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .var(COMPLETE_VAR)
        .complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            crate::errln!("error: {}", crate::hint::with_hint(e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    let global = cli.global;
    match cli.command {
        Command::Run(args) => run::run(&global, args),
        Command::Rerun(args) => run::rerun(&global, args),
        Command::Targets => inspect::targets(&global),
        Command::Runs(args) => inspect::runs(&global, args),
        Command::Status(args) => inspect::status(&global, args),
        Command::Logs(args) => inspect::logs(&global, args),
        Command::Gc(args) => maintain::gc(&global, args),
        Command::Serve(args) => serve(&global, &args),
        Command::Doctor(args) => setup::doctor(&global, args),
        Command::Hosts(args) => hosts::hosts(&global, args),
        Command::Init(args) => init::init(&global, args),
        Command::Completions(args) => setup::completions(args),
        Command::Man(args) => man::man(args),
        Command::Render(RenderCommand::GuestFlake(args)) => render::guest_flake(&global, args),
        Command::Image(ImageCommand::Build(args)) => image::build(&global, args),
        Command::Image(ImageCommand::Import(args)) => image::import(&global, args),
        Command::Image(ImageCommand::List) => image::list(&global),
    }
}

/// `pikaci serve`: the state dir as `status` finds it, served until stopped.
fn serve(global: &args::Global, args: &args::ServeArgs) -> Result<u8, Error> {
    let state = context::state_only(global)?;
    let shown = state.root().display().to_string();
    crate::serve::serve(state, &args.listen, |addr| {
        crate::outln!("pikaci serve: http://{addr}/ (reading {shown}, read-only)");
        if !crate::serve::is_loopback(&addr) {
            crate::errln!("warning: {addr} is not loopback: whoever reaches it reads the logs");
        }
    })
    .map_err(|e| Error::infra("serving the runs", e))?;
    Ok(0)
}
