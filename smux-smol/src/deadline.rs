//! The error of a deadline-bound write, which carries the count it did write.

use std::error::Error;
use std::fmt;
use std::io;

/// A write with a deadline stopped before all of its data was accepted.
///
/// [`PartialWrite::written`] is exactly the number of leading bytes the session
/// accepted: those will reach the peer (unless the session ends), the rest was not
/// sent at all. Resend `&buf[e.written()..]` to continue without duplicating or
/// losing a byte.
#[derive(Debug)]
pub struct PartialWrite {
    written: usize,
    error: io::Error,
}

impl PartialWrite {
    pub(crate) fn new(written: usize, error: io::Error) -> PartialWrite {
        PartialWrite { written, error }
    }

    /// Bytes accepted before the write stopped.
    pub fn written(&self) -> usize {
        self.written
    }

    /// True if the write stopped because its deadline passed.
    pub fn is_timeout(&self) -> bool {
        self.error.kind() == io::ErrorKind::TimedOut
    }

    /// Why the write stopped.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// The underlying I/O error (the count is dropped).
    pub fn into_error(self) -> io::Error {
        self.error
    }
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} bytes were written",
            self.error, self.written
        )
    }
}

impl Error for PartialWrite {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

impl From<PartialWrite> for io::Error {
    /// An `io::Error` of the same kind that still carries the `PartialWrite` (and
    /// its count) as its inner error.
    fn from(e: PartialWrite) -> io::Error {
        io::Error::new(e.error.kind(), e)
    }
}
