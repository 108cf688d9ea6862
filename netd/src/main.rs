fn main() -> std::process::ExitCode {
    netd::cli::main()
}
