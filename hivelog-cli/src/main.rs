//! `hivelog`, the operator's tool (see the `hivelog_cli` library for what it does).

fn main() -> std::process::ExitCode {
    hivelog_cli::main()
}
