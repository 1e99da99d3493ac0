//! `hivelog check` with the test webhook destination registered: the one line a team adds to
//! make its own destination known to the operator's tool.

fn main() -> std::process::ExitCode {
    hivelog::register_destination(&hivelog_tests::webhook::DESTINATION);
    hivelog_cli::main()
}
