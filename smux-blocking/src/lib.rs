//! smux over std sockets and threads.
//!
//! TODO crate docs

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod net;
mod poller;
mod probe;
mod session;
mod signal;
mod stream;
mod transport;

pub use net::{connect, Listener};
pub use poller::{Event, Events, Interest, Poller};
pub use probe::{is_smux, probe_addr};
pub use session::Session;
pub use smux_proto::{Config, EndReason, OpenError, Role, Stats, StreamId};
pub use stream::Stream;
pub use transport::{Parts, ReadTimeout, Transport};
