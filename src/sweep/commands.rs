//! The `lcsim sweep` subcommands as library calls.
