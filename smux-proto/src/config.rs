//! Session configuration.

use std::fmt;
use std::time::Duration;

use crate::frame::MAX_FRAME_REFERENCE;

/// Settings of one session, built from [`Config::default`] (which matches the reference
/// implementation) with the `with_*` methods; checked when a session is created
/// ([`Config::validate`]).
///
/// ```
/// use smux_proto::Config;
/// let config = Config::default()
///     .with_window(1 << 20)
///     .with_keepalive_interval(std::time::Duration::from_secs(5));
/// assert_eq!(config.window(), 1 << 20);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    pub(crate) window: u32,
    pub(crate) cfm_threshold: u32,
    pub(crate) max_frame: u32,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) accept_backlog: usize,
    pub(crate) max_buffered_in: usize,
    pub(crate) max_buffered_out: usize,
    pub(crate) max_pending_answers: usize,
    pub(crate) extensions: bool,
    pub(crate) max_window: u32,
}

impl Config {
    /// Unconfirmed bytes this end accepts per stream: its receive window (default
    /// 512 KiB). A peer of this crate learns it when the ends agree on the extensions
    /// and keeps to it; any other peer may send up to 512 KiB, which is always
    /// accepted ([PROTOCOL.md](https://github.com/smux-rs/smux-rs/blob/main/docs/PROTOCOL.md), section 5). Our own writes keep to the peer's
    /// window: the smaller of this and 512 KiB until the peer told its own.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Sets [`Config::window`].
    pub fn with_window(mut self, window: u32) -> Config {
        self.window = window;
        self
    }

    /// The receiver confirms (CFM) consumed bytes once this many have accumulated
    /// since the last confirmation (default 256 KiB, half the window); also whenever
    /// its reader caught up, or the peer is out of credit. At most `window`.
    pub fn cfm_threshold(&self) -> u32 {
        self.cfm_threshold
    }

    /// Sets [`Config::cfm_threshold`].
    pub fn with_cfm_threshold(mut self, cfm_threshold: u32) -> Config {
        self.cfm_threshold = cfm_threshold;
        self
    }

    /// Largest PSH payload sent and accepted (default 64 KiB; the reference cannot
    /// take more). A longer incoming PSH is a protocol error.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Sets [`Config::max_frame`].
    pub fn with_max_frame(mut self, max_frame: u32) -> Config {
        self.max_frame = max_frame;
        self
    }

    /// A PIN is sent this often, whatever else is being sent (default 10 s).
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval
    }

    /// Sets [`Config::keepalive_interval`].
    pub fn with_keepalive_interval(mut self, keepalive_interval: Duration) -> Config {
        self.keepalive_interval = keepalive_interval;
        self
    }

    /// The session ends if nothing arrives for this long (default 100 s). Must exceed
    /// `keepalive_interval`.
    pub fn keepalive_timeout(&self) -> Duration {
        self.keepalive_timeout
    }

    /// Sets [`Config::keepalive_timeout`].
    pub fn with_keepalive_timeout(mut self, keepalive_timeout: Duration) -> Config {
        self.keepalive_timeout = keepalive_timeout;
        self
    }

    /// Streams opened by the peer and not yet accepted (default 1024). A SYN beyond
    /// this is refused (FIN, or RST on an extended stream); 0 refuses every incoming
    /// stream (a session that only opens).
    pub fn accept_backlog(&self) -> usize {
        self.accept_backlog
    }

    /// Sets [`Config::accept_backlog`].
    pub fn with_accept_backlog(mut self, accept_backlog: usize) -> Config {
        self.accept_backlog = accept_backlog;
        self
    }

    /// Bytes buffered for reading across all streams of the session (default 32
    /// MiB). At the bound the session stops taking input until the application reads.
    /// At least `max_frame`.
    ///
    /// Size it for the streams your application may leave unread while it waits on
    /// something else, such as its own writes on those streams: at least `window`
    /// times their number, and twice that between two ends of ours, whose windows
    /// may grow by up to half of this bound in all. Below that, such streams can fill
    /// the bound at both ends, and then nothing moves (with the defaults: more than
    /// 32 streams that each write a request of over a window before reading its
    /// answer, to a peer that answers as it reads). See docs/SECURITY.md. A session
    /// whose input stays held back at the bound for
    /// [`STALL_NOTICE`](crate::STALL_NOTICE) logs a warning that says so (every
    /// adapter, through `tracing`).
    pub fn max_buffered_in(&self) -> usize {
        self.max_buffered_in
    }

    /// Sets [`Config::max_buffered_in`].
    pub fn with_max_buffered_in(mut self, max_buffered_in: usize) -> Config {
        self.max_buffered_in = max_buffered_in;
        self
    }

    /// Bytes accepted by stream writes but not yet handed to the transport, across
    /// all streams (default 4 MiB). At the bound writes wait.
    pub fn max_buffered_out(&self) -> usize {
        self.max_buffered_out
    }

    /// Sets [`Config::max_buffered_out`].
    pub fn with_max_buffered_out(mut self, max_buffered_out: usize) -> Config {
        self.max_buffered_out = max_buffered_out;
        self
    }

    /// VRM answers owed to the peer (they cannot be merged). Past this bound the
    /// session stops taking input until they are sent (default 1024).
    pub fn max_pending_answers(&self) -> usize {
        self.max_pending_answers
    }

    /// Sets [`Config::max_pending_answers`].
    pub fn with_max_pending_answers(mut self, max_pending_answers: usize) -> Config {
        self.max_pending_answers = max_pending_answers;
        self
    }

    /// Whether this end uses the extensions two smux-rs ends can agree on: growing
    /// windows, half-close, reset, go-away and the exchange of receive windows (default
    /// true). A reference peer never sees an extension frame either way; see
    /// [PROTOCOL.md](https://github.com/smux-rs/smux-rs/blob/main/docs/PROTOCOL.md), section 15.
    pub fn extensions(&self) -> bool {
        self.extensions
    }

    /// Sets [`Config::extensions`].
    pub fn with_extensions(mut self, extensions: bool) -> Config {
        self.extensions = extensions;
        self
    }

    /// Largest receive window a stream may grow to once extensions are on (default
    /// 16 MiB). Windows grow from `window` when the measured round-trip time shows the
    /// window, not the reader, limits the stream, and only within half of
    /// `max_buffered_in` across the session. At or below `window`, windows never grow.
    pub fn max_window(&self) -> u32 {
        self.max_window
    }

    /// Sets [`Config::max_window`].
    pub fn with_max_window(mut self, max_window: u32) -> Config {
        self.max_window = max_window;
        self
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            window: 512 * 1024,
            cfm_threshold: 256 * 1024,
            max_frame: MAX_FRAME_REFERENCE,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(100),
            accept_backlog: 1024,
            max_buffered_in: 32 * 1024 * 1024,
            max_buffered_out: 4 * 1024 * 1024,
            max_pending_answers: 1024,
            extensions: true,
            max_window: 16 * 1024 * 1024,
        }
    }
}

/// A setting that `Config::validate` rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(&'static str);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid smux config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that the settings are consistent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m| Err(ConfigError(m));
        if self.window == 0 {
            return err("window must be positive");
        }
        if self.cfm_threshold == 0 || self.cfm_threshold > self.window {
            return err("cfm_threshold must be in 1..=window");
        }
        if self.max_frame == 0 {
            return err("max_frame must be positive");
        }
        if self.keepalive_interval.is_zero() {
            return err("keepalive_interval must be positive");
        }
        if self.keepalive_timeout <= self.keepalive_interval {
            return err("keepalive_timeout must exceed keepalive_interval");
        }
        if self.max_buffered_in < self.max_frame as usize {
            return err("max_buffered_in must hold at least one frame");
        }
        if self.max_buffered_out == 0 || self.max_pending_answers == 0 {
            return err("max_buffered_out and max_pending_answers must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_reference() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.window, 524_288);
        assert_eq!(c.max_frame, 65_536);
    }

    #[test]
    fn inconsistent_settings_are_rejected() {
        let bad = [
            Config {
                window: 0,
                ..Config::default()
            },
            Config {
                cfm_threshold: 600_000,
                ..Config::default()
            },
            Config {
                keepalive_timeout: Duration::from_secs(1),
                ..Config::default()
            },
            Config {
                max_buffered_in: 10,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
