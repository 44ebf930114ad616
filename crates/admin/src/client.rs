//! CLI side: a blocking client with timeouts and errors that tell the operator what to do.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::{AdminError, Request, Response, ResponseFrame};

/// Default time to wait for each read or write of a call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest response line the client accepts (a `show sa` of a large hub is big, but finite).
pub const MAX_RESPONSE_LINE: u64 = 1 << 30;

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The daemon did not answer within the timeout.
    Timeout(Duration),
    /// The daemon closed the connection without answering.
    Closed,
    /// The daemon's answer could not be understood.
    Protocol(String),
    /// The daemon answered with an error.
    Remote(AdminError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "admin socket: {e}"),
            ClientError::Timeout(t) => write!(
                f,
                "espada did not answer within {} s; is the daemon stuck? (check its logs)",
                t.as_secs_f32()
            ),
            ClientError::Closed => {
                f.write_str("espada closed the admin connection without answering")
            }
            ClientError::Protocol(msg) => write!(
                f,
                "unexpected answer from espada ({msg}); are the CLI and the daemon the same \
                 version?"
            ),
            ClientError::Remote(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            ClientError::Remote(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection to the daemon's admin socket. Calls are sequential; each gets a fresh id.
#[derive(Debug)]
pub struct AdminClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: Duration,
    next_id: u64,
}

impl AdminClient {
    /// Connects with [`DEFAULT_TIMEOUT`].
    pub fn connect(path: &Path) -> io::Result<AdminClient> {
        AdminClient::connect_timeout(path, DEFAULT_TIMEOUT)
    }

    /// Connects to the socket at `path`; `timeout` bounds every later read and write.
    ///
    /// (A unix-socket connect completes without the daemon's help unless its backlog is full,
    /// so the timeout that matters is the one on the answer.) Errors explain what to do:
    /// no socket → is espada running; permission denied → run as root.
    pub fn connect_timeout(path: &Path, timeout: Duration) -> io::Result<AdminClient> {
        let stream = UnixStream::connect(path).map_err(|e| connect_error(path, e))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(AdminClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            timeout,
            next_id: 1,
        })
    }

    /// Sends `request` and waits for its answer.
    pub fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self.writer.write_all(request.to_line(id).as_bytes()) {
            // The daemon may have refused us and closed; its reason beats "broken pipe".
            if let Ok(Some(ResponseFrame {
                result: Err(err), ..
            })) = self.read_frame()
            {
                return Err(ClientError::Remote(err));
            }
            return Err(self.io_error(e));
        }
        loop {
            let frame = self.read_frame()?.ok_or(ClientError::Closed)?;
            match frame.id {
                // An answer to an earlier call that timed out: skip it.
                Some(other) if other != id => continue,
                _ => {}
            }
            return match frame.result {
                Ok(resp) if resp.answers(&request) => Ok(resp),
                Ok(_) => Err(ClientError::Protocol(format!(
                    "the answer to {} is of another kind",
                    request.command()
                ))),
                Err(err) => Err(ClientError::Remote(err)),
            };
        }
    }

    fn read_frame(&mut self) -> Result<Option<ResponseFrame>, ClientError> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_RESPONSE_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.io_error(e))?;
        if line.is_empty() {
            return Ok(None);
        }
        if line.pop() != Some(b'\n') {
            return Err(if line.len() as u64 + 1 >= MAX_RESPONSE_LINE {
                ClientError::Protocol("response line too long".into())
            } else {
                ClientError::Closed
            });
        }
        ResponseFrame::parse(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn io_error(&self, e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::Timeout(self.timeout)
            }
            _ => ClientError::Io(e),
        }
    }
}

fn connect_error(path: &Path, e: io::Error) -> io::Error {
    let p = PathBuf::from(path);
    let msg = match e.kind() {
        io::ErrorKind::NotFound => format!("is espada running? (no socket at {})", p.display()),
        io::ErrorKind::PermissionDenied => format!(
            "the admin socket is root-only: run as root (permission denied on {})",
            p.display()
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "is espada running? (nobody listens on {}; the socket file is stale)",
            p.display()
        ),
        _ => format!("cannot connect to {}: {e}", p.display()),
    };
    io::Error::new(e.kind(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_tell_the_operator_what_to_do() {
        let p = Path::new("/run/espada/admin.sock");
        let missing = connect_error(p, io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            missing.to_string(),
            "is espada running? (no socket at /run/espada/admin.sock)"
        );
        let denied = connect_error(p, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(
            denied
                .to_string()
                .starts_with("the admin socket is root-only: run as root"),
            "{denied}"
        );
        let refused = connect_error(p, io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(refused.to_string().contains("stale"), "{refused}");
    }

    #[test]
    fn missing_socket_is_reported_as_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = AdminClient::connect(&dir.path().join("nope.sock")).unwrap_err();
        assert!(err.to_string().starts_with("is espada running?"), "{err}");
    }
}
