use std::process::Command;

use super::Transport;
use crate::argv::Argv;

/// This machine.
pub struct Local;

impl Transport for Local {
    fn host(&self) -> String {
        "local".into()
    }

    fn command(&self, argv: &Argv) -> Command {
        argv.command()
    }
}
