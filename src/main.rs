fn main() -> std::process::ExitCode {
    // A host job's reaper is this binary too; it must not parse pikaci's command line.
    if let Some(code) = pikaci::reaper::main_if_invoked() {
        std::process::exit(code);
    }
    pikaci::cli::main()
}
