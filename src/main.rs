fn main() -> std::process::ExitCode {
    pikaci::cli::main()
}
