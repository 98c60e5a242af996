//! The command line: clap definitions in `args`, one file per command family.

mod args;
mod context;
mod image;
mod inspect;
mod maintain;
mod render;
mod run;
mod setup;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command, ImageCommand, RenderCommand};

use crate::error::Error;

/// Parses the command line, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
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
            crate::errln!("error: {e}");
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
        Command::Doctor(args) => setup::doctor(&global, args),
        Command::Init(args) => setup::init(args),
        Command::Completions(args) => setup::completions(args),
        Command::Man => setup::man(),
        Command::Render(RenderCommand::GuestFlake(args)) => render::guest_flake(&global, args),
        Command::Image(ImageCommand::Build(args)) => image::build(&global, args),
        Command::Image(ImageCommand::Import(args)) => image::import(&global, args),
        Command::Image(ImageCommand::List) => image::list(&global),
    }
}
