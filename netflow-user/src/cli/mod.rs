//! The binary's own parts, not in the library: the arguments of each
//! command ([`args`]) and the handlers that run them ([`commands`]).
pub(crate) mod args;
pub(crate) mod commands;
