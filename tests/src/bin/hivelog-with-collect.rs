//! `hivelog check` with the in-memory test destination registered (`hivelog_tests::collect`),
//! whose `send` can be made to panic.

fn main() -> std::process::ExitCode {
    hivelog::register_destination(&hivelog_tests::collect::DESTINATION);
    hivelog_cli::main()
}
