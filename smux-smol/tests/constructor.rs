//! Every constructor checks the configuration first and reports a bad one the same
//! way: `InvalidInput`, with the `ConfigError` as the inner error.

mod common;

use std::io;
use std::time::Duration;

use common::{run, tcp_pair};
use smux_smol::{connect, Config, ConfigError, Listener, Role, Session};

fn is_config_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
        && e.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<ConfigError>().is_some())
}

#[test]
fn a_bad_config_is_invalid_input_with_the_config_error_inside() {
    run(Duration::from_secs(20), async {
        let bad = Config::default().with_window(0);
        let (c, s) = tcp_pair().await;
        let e = Session::new(c, bad.clone(), Role::Dialer).expect_err("window 0");
        assert!(is_config_error(&e), "{e:?}");
        let e = Session::with_driver(s, bad.clone(), Role::Acceptor).expect_err("window 0");
        assert!(is_config_error(&e), "{e:?}");
        let e = Listener::bind("127.0.0.1:0", bad.clone()).expect_err("window 0");
        assert!(is_config_error(&e), "{e:?}");
        // Checked before connecting: no listener is needed to see it.
        let e = connect("127.0.0.1:1", bad).await.expect_err("window 0");
        assert!(is_config_error(&e), "{e:?}");
    });
}
