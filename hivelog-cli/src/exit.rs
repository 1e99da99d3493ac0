//! The exit codes of `hivelog check`, for machines: a container health check or a CI step
//! reads them as they are. Their own module because both the check (which returns them) and
//! the report (which derives one from what it holds) name them.

/// Exit code: the configuration is valid and every destination accepted the test event.
pub const EXIT_OK: u8 = 0;
/// Exit code: a destination is unreachable, refused the credentials or the event.
pub const EXIT_DESTINATION: u8 = 1;
/// Exit code: the configuration (or the command line) is invalid.
pub const EXIT_CONFIG: u8 = 2;
