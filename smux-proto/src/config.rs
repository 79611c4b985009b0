//! Session configuration.

use std::fmt;
use std::time::Duration;

use crate::frame::MAX_FRAME_REFERENCE;

/// Settings of one session. Both ends must agree on `window` (the protocol does not
/// carry it); the defaults match the reference implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Unconfirmed bytes allowed per stream and direction (default 512 KiB). The sender
    /// never has more than this in flight on a stream, and the receiver treats more as
    /// a protocol error, so it bounds each stream's receive buffer too.
    pub window: u32,
    /// The receiver confirms (CFM) consumed bytes once this many have accumulated since
    /// the last confirmation (default 256 KiB, half the window). At most `window`.
    pub cfm_threshold: u32,
    /// Largest PSH payload sent and accepted (default 64 KiB; the reference cannot take
    /// more). A longer incoming PSH is a protocol error.
    pub max_frame: u32,
    /// A PIN is sent this often, whatever else is being sent (default 10 s).
    pub keepalive_interval: Duration,
    /// The session ends if nothing arrives for this long (default 100 s).
    pub keepalive_timeout: Duration,
    /// Streams opened by the peer and not yet accepted (default 1024). A SYN beyond
    /// this is refused by answering FIN at once; 0 refuses every incoming stream
    /// (a session that only opens).
    pub accept_backlog: usize,
    /// Bytes buffered for reading across all streams of the session (default 32 MiB).
    /// At the bound the session stops taking input until the application reads.
    pub max_buffered_in: usize,
    /// Bytes accepted by stream writes but not yet handed to the transport, across all
    /// streams (default 4 MiB). At the bound writes report `Blocked`.
    pub max_buffered_out: usize,
    /// Frames owed to the peer that cannot be merged (VRM answers). Past this bound the
    /// session stops taking input until they are sent (default 1024).
    pub max_pending_answers: usize,
    /// Offer (acceptor) or accept (dialer) the extensions two smux-rs ends can agree
    /// on: growing windows, half-close, reset and go-away (default true). A reference
    /// peer never sees an extension frame either way; see `docs/PROTOCOL.md`.
    pub extensions: bool,
    /// Largest receive window a stream may grow to once extensions are on (default
    /// 16 MiB). Windows grow from `window` when the measured round-trip time shows the
    /// window, not the reader, limits the stream, and only within half of
    /// `max_buffered_in` across the session. At or below `window`, windows never grow.
    pub max_window: u32,
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
