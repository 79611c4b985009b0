//! More than one poller on a session: a stream's registration belongs to exactly one
//! of them, and registering it with another moves it.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{bounded, pair};
use smux_blocking::{Events, Interest, Poller};

const LIMIT: Duration = Duration::from_secs(30);
/// Long enough for a stale report to show up, short enough to keep the test quick.
const QUIET: Duration = Duration::from_millis(200);

/// The tokens `poller` reports within `timeout`.
fn tokens(poller: &Poller, timeout: Duration) -> Vec<usize> {
    let mut events = Events::with_capacity(8);
    poller.wait(&mut events, Some(timeout)).expect("wait");
    events.iter().map(|e| e.token()).collect()
}

fn moving_a_registration(ext: bool) {
    bounded(LIMIT, move || {
        let (c, s) = pair(ext);
        let st = c.open().expect("open");
        (&st).write_all(b"ready").expect("write");
        let peer = s.accept().expect("accept");
        peer.set_nonblocking(true).expect("nonblocking");
        let (a, b) = (s.poller(), s.poller());

        a.register(&peer, 1, Interest::READABLE)
            .expect("register on a");
        assert_eq!(tokens(&a, LIMIT), [1], "a reports its registration");
        b.register(&peer, 2, Interest::READABLE).expect("move to b");
        assert_eq!(tokens(&b, LIMIT), [2], "b reports the moved stream");
        assert_eq!(
            tokens(&a, QUIET),
            [0usize; 0],
            "a still reports the moved stream"
        );

        // A deregister by the old owner does not touch the new owner's registration.
        a.deregister(&peer).expect("deregister on a");
        assert_eq!(
            tokens(&b, LIMIT),
            [2],
            "b lost the stream to a's deregister"
        );

        // Moving back works the same way, with the latest token.
        a.register(&peer, 3, Interest::READABLE)
            .expect("move back to a");
        assert_eq!(tokens(&a, LIMIT), [3], "a reports the stream again");
        assert_eq!(
            tokens(&b, QUIET),
            [0usize; 0],
            "b still reports the moved stream"
        );

        // Dropping the old owner leaves the current registration alone.
        b.register(&peer, 4, Interest::READABLE)
            .expect("move to b again");
        drop(a);
        assert_eq!(
            tokens(&b, LIMIT),
            [4],
            "b lost the stream when a was dropped"
        );
    });
}
both_modes!(moving_a_registration);
