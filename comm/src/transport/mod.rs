//! Everything below the collectives: sockets, framed connections, control messages.

pub(crate) mod connection;
pub(crate) mod messages;
pub(crate) mod seal;
pub(crate) mod socket;
