//! The process exit codes of the contract, in one place.

use std::process::ExitCode;

/// Hasura's metadata is consistent.
pub const CONSISTENT: u8 = 0;
/// Metadata is still inconsistent after every attempt.
pub const INCONSISTENT: u8 = 1;
/// A usage or configuration error.
pub const USAGE: u8 = 2;
/// Hasura unreachable, access denied, or an answer the API does not promise.
pub const FAILED: u8 = 3;

/// Turns one of the codes above into an [`ExitCode`].
pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}
