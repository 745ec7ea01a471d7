//! Reading JSON lines from a socket with a read timeout, without losing a partial line when a
//! read times out.

use std::io::{ErrorKind, Read};

/// What one poll of the socket gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// A complete line (without its newline).
    Line(String),
    /// Nothing complete yet (the read timed out).
    Nothing,
    /// The peer closed the connection (or it broke).
    Closed,
}

/// A line reader over a stream whose reads time out.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    limit: usize,
}

impl<R: Read> LineReader<R> {
    /// Reads lines of at most `limit` bytes from `inner`.
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            limit,
        }
    }

    /// Returns a buffered line, or reads once (up to the stream's timeout) for more.
    pub fn poll(&mut self) -> Polled {
        if let Some(line) = self.take_line() {
            return Polled::Line(line);
        }
        if self.buf.len() > self.limit {
            return Polled::Closed;
        }
        let mut chunk = [0u8; 4096];
        match self.inner.read(&mut chunk) {
            Ok(0) => Polled::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.take_line().map_or(Polled::Nothing, Polled::Line)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Polled::Nothing
            }
            Err(_) => Polled::Closed,
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let at = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=at).collect();
        Some(String::from_utf8_lossy(&line[..at]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_sees_the_end() {
        let data: &[u8] = b"{\"a\":1}\n{\"b\"";
        let mut r = LineReader::new(data, 100);
        assert_eq!(r.poll(), Polled::Line("{\"a\":1}".into()));
        // The rest is an unterminated line, then the end of the stream.
        assert_eq!(r.poll(), Polled::Closed);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let data = vec![b'x'; 300];
        let mut r = LineReader::new(&data[..], 100);
        let mut polls = 0;
        while r.poll() != Polled::Closed {
            polls += 1;
            assert!(polls < 10, "never gave up on an over-long line");
        }
    }
}
