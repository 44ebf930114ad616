//! Daemon side: a non-blocking admin socket server driven by the control thread's poll loop.
//!
//! [`AdminServer::poll`] never blocks: it accepts what is pending, reads what has arrived,
//! answers every complete line through the handler, writes what the sockets take, and closes
//! connections that are finished, idle, misbehaving or not allowed. Call it every loop
//! iteration (or whenever the listener or a connection is readable).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::proto::{
    AdminError, ErrorCode, MAX_REQUEST_LINE, Request, RequestFrame, Response, ResponseFrame,
};

/// Default peer policy: root, or the user the daemon runs as.
pub fn allowed(peer_uid: u32, own_euid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_euid
}

/// Limits and policy of an [`AdminServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections served at once; more are answered `busy` and closed.
    pub max_connections: usize,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Longest request line (newline excluded); longer ones get `bad_request` and a close.
    pub max_line: usize,
    /// While this many response bytes wait for a slow reader, its further requests wait too.
    pub max_pending_output: usize,
    /// Bytes read from one connection per [`AdminServer::poll`], so one client cannot starve
    /// the others or the control thread.
    pub read_budget: usize,
    /// Which peers may talk to the daemon: `(peer_uid, own_euid) -> allowed`.
    pub peer_allowed: fn(u32, u32) -> bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 16,
            idle_timeout: Duration::from_secs(5),
            max_line: MAX_REQUEST_LINE,
            max_pending_output: 4 << 20,
            read_budget: 256 << 10,
            peer_allowed: allowed,
        }
    }
}

/// Counters of an [`AdminServer`], for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted (including those rejected right after).
    pub accepted: u64,
    /// Connections rejected by the peer policy.
    pub rejected_peer: u64,
    /// Connections rejected because `max_connections` were open.
    pub rejected_busy: u64,
    /// Request lines answered (successes and errors).
    pub requests: u64,
    /// Request lines answered with `bad_request` or `unknown_command` by the server itself.
    pub bad_requests: u64,
    /// Connections closed for idleness.
    pub idle_closed: u64,
    /// `accept` failures other than "nothing pending" (e.g. out of file descriptors).
    pub accept_errors: u64,
}

struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    last_active: Instant,
    read_closed: bool,
    close_after_flush: bool,
}

impl Conn {
    fn new(stream: UnixStream, now: Instant) -> Conn {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            last_active: now,
            read_closed: false,
            close_after_flush: false,
        }
    }

    fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn queue(&mut self, frame: &ResponseFrame) {
        self.wbuf.extend_from_slice(frame.to_line().as_bytes());
    }

    /// Writes what the socket takes without blocking.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            // send(MSG_NOSIGNAL): a client that went away must not SIGPIPE the daemon.
            match rustix::net::send(&self.stream, &self.wbuf[self.wpos..], SendFlags::NOSIGNAL) {
                Ok(n) => {
                    self.wpos += n;
                    self.last_active = now;
                }
                Err(Errno::INTR) => {}
                Err(e) if e == Errno::AGAIN || e == Errno::WOULDBLOCK => break,
                Err(e) => return Err(e.into()),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos >= 64 << 10 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    /// Answers every complete line in `rbuf`, within the output limit. Returns lines answered.
    fn answer_lines(
        &mut self,
        cfg: &ServerConfig,
        stats: &mut ServerStats,
        handler: &mut dyn FnMut(Request) -> Result<Response, AdminError>,
    ) -> usize {
        let mut answered = 0;
        let mut start = 0;
        while !self.close_after_flush && self.pending_output() < cfg.max_pending_output {
            let Some(nl) = self.rbuf[start..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let end = start + nl;
            let mut line = &self.rbuf[start..end];
            start = end + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > cfg.max_line {
                self.reject_long_line(cfg, stats);
                answered += 1;
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let frame = match RequestFrame::parse(line) {
                Ok(RequestFrame { id, request }) => ResponseFrame {
                    id: Some(id),
                    result: handler(request),
                },
                Err(err) => {
                    stats.bad_requests += 1;
                    err
                }
            };
            self.queue(&frame);
            answered += 1;
        }
        self.rbuf.drain(..start.min(self.rbuf.len()));
        if !self.close_after_flush && self.rbuf.len() > cfg.max_line && !self.rbuf.contains(&b'\n')
        {
            // No newline within the limit: it can only get longer. (Complete lines left
            // unanswered while output is backed up are not a long line.)
            self.reject_long_line(cfg, stats);
            answered += 1;
        }
        answered
    }

    fn reject_long_line(&mut self, cfg: &ServerConfig, stats: &mut ServerStats) {
        stats.bad_requests += 1;
        self.queue(&ResponseFrame::error(
            None,
            AdminError::bad_request(format!(
                "request line longer than {} bytes; closing the connection",
                cfg.max_line
            )),
        ));
        self.rbuf = Vec::new();
        self.close_after_flush = true;
    }

    /// Reads what has arrived (up to the read budget) and answers complete lines.
    /// Returns `Err` when the connection must be dropped at once.
    fn service(
        &mut self,
        now: Instant,
        cfg: &ServerConfig,
        stats: &mut ServerStats,
        handler: &mut dyn FnMut(Request) -> Result<Response, AdminError>,
    ) -> io::Result<usize> {
        let mut answered = self.answer_lines(cfg, stats, handler);
        let mut budget = cfg.read_budget;
        let mut chunk = [0u8; 16 << 10];
        while !self.read_closed
            && !self.close_after_flush
            && budget > 0
            && self.pending_output() < cfg.max_pending_output
        {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.read_closed = true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.last_active = now;
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    answered += self.answer_lines(cfg, stats, handler);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.read_closed && !self.close_after_flush && !self.rbuf.is_empty() {
            // The client half-closed, maybe after a last line without newline: answer it too.
            if self.rbuf.last() != Some(&b'\n') {
                self.rbuf.push(b'\n');
            }
            answered += self.answer_lines(cfg, stats, handler);
        }
        self.flush(now)?;
        Ok(answered)
    }

    fn finished(&self) -> bool {
        self.pending_output() == 0
            && (self.close_after_flush || (self.read_closed && self.rbuf.is_empty()))
    }
}

/// The daemon's admin socket. See the [module docs](self).
pub struct AdminServer {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we bound, so `Drop` only removes our own.
    ident: (u64, u64),
    own_euid: u32,
    config: ServerConfig,
    conns: Vec<Conn>,
    stats: ServerStats,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("path", &self.path)
            .field("connections", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds the admin socket at `path` with the default [`ServerConfig`].
    ///
    /// Creates the parent directory with mode 0700 if it is missing, replaces a stale socket
    /// file (a socket nobody answers on), refuses to touch a live socket or a non-socket file,
    /// binds, sets mode 0600 and makes the listener non-blocking.
    pub fn bind(path: &Path) -> io::Result<AdminServer> {
        AdminServer::bind_with(path, ServerConfig::default())
    }

    /// [`AdminServer::bind`] with explicit limits and peer policy.
    pub fn bind_with(path: &Path, config: ServerConfig) -> io::Result<AdminServer> {
        let ctx = |e: io::Error, what: &str| {
            io::Error::new(
                e.kind(),
                format!("admin socket {}: {what}: {e}", path.display()),
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| ctx(e, "cannot create its directory"))?;
            // The umask may have narrowed the mode further, never widened it; set it exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| ctx(e, "cannot set its directory to mode 0700"))?;
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path).map_err(|e| ctx(e, "cannot bind"))?;
        // From here on a failure must not leave our socket file behind.
        let cleanup = |e: io::Error| {
            let _ = fs::remove_file(path);
            e
        };
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| cleanup(ctx(e, "cannot set mode 0600")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| cleanup(ctx(e, "cannot make it non-blocking")))?;
        let md = fs::symlink_metadata(path).map_err(|e| cleanup(ctx(e, "cannot stat")))?;
        Ok(AdminServer {
            listener,
            path: path.to_owned(),
            ident: (md.dev(), md.ino()),
            own_euid: rustix::process::geteuid().as_raw(),
            config,
            conns: Vec::new(),
            stats: ServerStats::default(),
        })
    }

    /// Path of the socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Counters since bind.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The listening socket, e.g. to register it with the control thread's `poll`/`epoll`.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// One non-blocking round at the current time; see [`AdminServer::poll_at`].
    pub fn poll(
        &mut self,
        handler: &mut dyn FnMut(Request) -> Result<Response, AdminError>,
    ) -> usize {
        self.poll_at(Instant::now(), handler)
    }

    /// One non-blocking round: accept pending connections, read, answer every complete request
    /// line through `handler`, write what the sockets take, close finished, idle (no progress
    /// for `idle_timeout` before `now`) and broken connections.
    ///
    /// Returns the number of request lines answered, error answers included.
    pub fn poll_at(
        &mut self,
        now: Instant,
        handler: &mut dyn FnMut(Request) -> Result<Response, AdminError>,
    ) -> usize {
        self.accept_pending(now);
        let mut answered = 0;
        let (cfg, stats) = (&self.config, &mut self.stats);
        self.conns.retain_mut(|conn| {
            match conn.service(now, cfg, stats, handler) {
                Ok(n) => answered += n,
                Err(_) => return false,
            }
            if conn.finished() {
                return false;
            }
            if now.saturating_duration_since(conn.last_active) >= cfg.idle_timeout {
                stats.idle_closed += 1;
                return false;
            }
            true
        });
        self.stats.requests += answered as u64;
        answered
    }

    fn accept_pending(&mut self, now: Instant) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // EMFILE and friends: leave the rest in the backlog for a later round.
                    self.stats.accept_errors += 1;
                    return;
                }
            };
            self.stats.accepted += 1;
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut conn = Conn::new(stream, now);
            let rejection = match rustix::net::sockopt::socket_peercred(&conn.stream) {
                Ok(cred) if !(self.config.peer_allowed)(cred.uid.as_raw(), self.own_euid) => {
                    self.stats.rejected_peer += 1;
                    Some(AdminError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "the admin socket is root-only: uid {} may not use it; run as root",
                            cred.uid.as_raw()
                        ),
                    ))
                }
                Ok(_) if self.conns.len() >= self.config.max_connections => {
                    self.stats.rejected_busy += 1;
                    Some(AdminError::new(
                        ErrorCode::Busy,
                        format!(
                            "too many admin connections (limit {}); try again",
                            self.config.max_connections
                        ),
                    ))
                }
                Ok(_) => None,
                Err(e) => Some(AdminError::internal(format!(
                    "cannot read peer credentials: {e}"
                ))),
            };
            match rejection {
                None => self.conns.push(conn),
                Some(err) => {
                    // A fresh socket buffer always takes one short line; then close.
                    conn.queue(&ResponseFrame::error(None, err));
                    let _ = conn.flush(now);
                }
            }
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        // Only remove the file if it is still the socket we bound (not a successor's).
        if let Ok(md) = fs::symlink_metadata(&self.path)
            && (md.dev(), md.ino()) == self.ident
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes `path` if it is a socket nobody answers on; errors if it is live or not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("admin socket {}: cannot stat: {e}", path.display()),
            ));
        }
    };
    if !md.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "admin socket {}: the path exists and is not a socket; refusing to replace it \
                 (remove it or configure another path)",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "admin socket {}: another daemon is listening on it; is espada already running?",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "admin socket {}: cannot remove the stale socket: {e}",
                        path.display()
                    ),
                )
            })
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "admin socket {}: cannot tell whether the existing socket is live: {e}",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_policy_allows_root_and_own_user_only() {
        assert!(allowed(0, 0));
        assert!(allowed(0, 998));
        assert!(allowed(998, 998));
        assert!(!allowed(1000, 998));
        assert!(!allowed(1000, 0));
        assert!(!allowed(65534, 0));
    }
}
