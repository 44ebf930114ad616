//! End-to-end tests over a real unix socket in a temporary directory. The server is polled from
//! the test thread exactly as the daemon's control thread would; clients run in other threads,
//! or on the test thread when they only need to write, let the server run, then read.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use espada_admin::{
    AdminClient, AdminServer, ClientError, ErrorCode, Request, Response, ResponseFrame,
    ServerConfig,
};

fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run/espada/admin.sock")
}

/// Polls `server` with the canned handler until `done(server, answered_so_far)`, or panics
/// after 10 s. Returns the number of requests answered.
fn poll_until(
    server: &mut AdminServer,
    mut done: impl FnMut(&AdminServer, usize) -> bool,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut handler = common::handler;
    let mut answered = 0;
    while !done(server, answered) {
        assert!(
            Instant::now() < deadline,
            "timed out polling the admin server"
        );
        answered += server.poll(&mut handler);
        thread::sleep(Duration::from_millis(1));
    }
    answered
}

/// Runs `client` on a thread while the test thread polls the server; returns its result.
fn with_client<T: Send + 'static>(
    server: &mut AdminServer,
    client: impl FnOnce() -> T + Send + 'static,
) -> T {
    let handle = thread::spawn(client);
    poll_until(server, |_, _| handle.is_finished());
    handle.join().expect("client thread panicked")
}

fn read_frame(reader: &mut impl BufRead) -> ResponseFrame {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "incomplete response line {line:?}");
    ResponseFrame::parse(line.trim_end().as_bytes()).unwrap()
}

/// True once the server has closed its side (EOF or reset); panics if data or nothing arrives.
fn is_closed(reader: &mut impl Read) -> bool {
    let mut buf = [0u8; 1];
    match reader.read(&mut buf) {
        Ok(0) => true,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        other => panic!("connection still open: {other:?}"),
    }
}

fn connect_raw(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn every_command_end_to_end_with_modes_0600_and_0700() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );

    let client_path = path.clone();
    let (answers, missing, pong) = with_client(&mut server, move || {
        let mut c = AdminClient::connect(&client_path).unwrap();
        let answers: Vec<Response> = [
            Request::ShowSa { spi: None },
            Request::ShowSa { spi: Some(0x1000) },
            Request::ShowTunnels,
            Request::ShowDrops,
            Request::ShowWorkers,
            Request::Ping,
        ]
        .into_iter()
        .map(|req| c.call(req).unwrap())
        .collect();
        let missing = c.call(Request::ShowSa { spi: Some(0xdead) }).unwrap_err();
        // The connection is still usable after an error answer.
        let pong = c.call(Request::Ping).unwrap();
        (answers, missing, pong)
    });
    assert_eq!(
        answers,
        vec![
            Response::Sa(common::sas()),
            Response::Sa(vec![common::sas().remove(0)]),
            Response::Tunnels(common::tunnels()),
            Response::Drops(common::drops()),
            Response::Workers(common::workers()),
            Response::Pong {
                version: common::VERSION.into()
            },
        ]
    );
    match missing {
        ClientError::Remote(e) => {
            assert_eq!(e.code, ErrorCode::NotFound);
            assert_eq!(e.msg, "no SA with SPI 0x0000dead");
        }
        other => panic!("expected not_found, got {other}"),
    }
    assert!(matches!(pong, Response::Pong { .. }));
    assert_eq!(server.stats().requests, 8);
    // The client hung up: the server notices and forgets the connection.
    poll_until(&mut server, |s, _| s.connections() == 0);

    drop(server);
    assert!(!path.exists(), "Drop must remove the socket file");
}

#[test]
fn malformed_line_gets_bad_request_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();
    let mut stream = connect_raw(&path);
    stream.write_all(b"this is not json\n").unwrap();
    stream
        .write_all(Request::Ping.to_line(41).as_bytes())
        .unwrap();
    // Blank lines are skipped and CRLF line endings tolerated.
    stream
        .write_all(b"\r\n\n{\"v\":1,\"id\":42,\"cmd\":\"show.tunnels\"}\r\n")
        .unwrap();
    poll_until(&mut server, |_, n| n == 3);

    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let first = read_frame(&mut reader);
    assert_eq!(first.id, None);
    assert_eq!(first.result.unwrap_err().code, ErrorCode::BadRequest);
    let second = read_frame(&mut reader);
    assert_eq!(second.id, Some(41));
    assert!(matches!(second.result, Ok(Response::Pong { .. })));
    let third = read_frame(&mut reader);
    assert_eq!(third.id, Some(42));
    assert_eq!(third.result, Ok(Response::Tunnels(common::tunnels())));

    // And it goes on answering.
    stream
        .write_all(Request::ShowWorkers.to_line(43).as_bytes())
        .unwrap();
    poll_until(&mut server, |_, n| n == 1);
    assert_eq!(read_frame(&mut reader).id, Some(43));
    assert_eq!(server.stats().bad_requests, 1);
}

#[test]
fn over_long_line_gets_an_error_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();

    // Without a newline: refused as soon as it passes the limit.
    let stream = connect_raw(&path);
    let mut writer = stream.try_clone().unwrap();
    let writing = thread::spawn(move || {
        // The server may close before we are done: ignore EPIPE/ECONNRESET.
        let _ = writer.write_all(&vec![b'a'; 70 * 1024]);
    });
    poll_until(&mut server, |s, n| n == 1 && s.connections() == 0);
    writing.join().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let frame = read_frame(&mut reader);
    let err = frame.result.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.msg.contains("longer than 65536 bytes"), "{err}");
    assert!(is_closed(&mut reader));
    drop(stream);

    // With a newline, after a good request on the same connection.
    let stream = connect_raw(&path);
    let mut line = Request::Ping.to_line(1).into_bytes();
    line.extend(std::iter::repeat_n(b' ', 65 * 1024));
    line.extend_from_slice(b"{}\n");
    let mut writer = stream.try_clone().unwrap();
    let writing = thread::spawn(move || {
        let _ = writer.write_all(&line);
    });
    poll_until(&mut server, |s, n| n == 2 && s.connections() == 0);
    writing.join().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_frame(&mut reader).id, Some(1));
    let err = read_frame(&mut reader).result.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(is_closed(&mut reader));
    stream.shutdown(Shutdown::Both).ok();
}

#[test]
fn a_line_at_exactly_the_limit_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();
    let mut line = Request::Ping.to_line(5).trim_end().as_bytes().to_vec();
    let pad = espada_admin::proto::MAX_REQUEST_LINE - line.len();
    line.splice(0..0, std::iter::repeat_n(b' ', pad));
    assert_eq!(line.len(), espada_admin::proto::MAX_REQUEST_LINE);
    line.push(b'\n');
    let stream = connect_raw(&path);
    let mut writer = stream.try_clone().unwrap();
    let writing = thread::spawn(move || writer.write_all(&line).unwrap());
    poll_until(&mut server, |_, n| n == 1);
    writing.join().unwrap();
    let frame = read_frame(&mut BufReader::new(stream));
    assert_eq!(frame.id, Some(5));
    assert!(frame.result.is_ok(), "{frame:?}");
}

#[test]
fn pipelined_requests_and_a_half_closed_last_line_are_all_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();
    let mut stream = connect_raw(&path);
    let mut batch = String::new();
    for id in 1..=20 {
        batch.push_str(&Request::ShowSa { spi: None }.to_line(id));
    }
    // The last request has no newline; the client half-closes instead.
    batch.push_str(r#"{"v":1,"id":21,"cmd":"ping"}"#);
    stream.write_all(batch.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    poll_until(&mut server, |s, n| n == 21 && s.connections() == 0);
    let mut reader = BufReader::new(stream);
    for id in 1..=20 {
        let f = read_frame(&mut reader);
        assert_eq!(f.id, Some(id));
        assert_eq!(f.result, Ok(Response::Sa(common::sas())));
    }
    assert_eq!(read_frame(&mut reader).id, Some(21));
    assert!(is_closed(&mut reader));
}

#[test]
fn stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A socket file left behind by a crashed daemon: bound, then the listener dropped.
    drop(UnixListener::bind(&path).unwrap());
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(
        UnixStream::connect(&path).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );

    let mut server = AdminServer::bind(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let p = path.clone();
    let pong = with_client(&mut server, move || {
        AdminClient::connect(&p)
            .unwrap()
            .call(Request::Ping)
            .unwrap()
    });
    assert_eq!(
        pong,
        Response::Pong {
            version: common::VERSION.into()
        }
    );
}

#[test]
fn a_regular_file_at_the_socket_path_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    std::fs::write(&path, b"precious").unwrap();
    let err = AdminServer::bind(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn a_second_server_on_a_live_socket_fails_instead_of_stealing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut first = AdminServer::bind(&path).unwrap();
    let err = AdminServer::bind(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert!(err.to_string().contains("already running"), "{err}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    // The first server still owns and serves the path.
    let p = path.clone();
    let pong = with_client(&mut first, move || {
        AdminClient::connect(&p).unwrap().call(Request::Ping)
    });
    assert!(pong.is_ok(), "{pong:?}");
}

#[test]
fn drop_leaves_a_successors_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let old = AdminServer::bind(&path).unwrap();
    // Someone removed our file and a new daemon bound the same path.
    std::fs::remove_file(&path).unwrap();
    let _new = UnixListener::bind(&path).unwrap();
    drop(old);
    assert!(
        path.exists(),
        "the old server removed its successor's socket"
    );
}

#[test]
fn peers_the_policy_refuses_get_permission_denied_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let config = ServerConfig {
        peer_allowed: |_peer, _own| false,
        ..ServerConfig::default()
    };
    let mut server = AdminServer::bind_with(&path, config).unwrap();
    let p = path.clone();
    let result = with_client(&mut server, move || {
        AdminClient::connect(&p)
            .unwrap()
            .call(Request::ShowSa { spi: None })
    });
    match result {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::PermissionDenied);
            assert!(
                e.msg.contains("root-only") && e.msg.contains("run as root"),
                "{e}"
            );
        }
        other => panic!("expected permission_denied, got {other:?}"),
    }
    assert_eq!(server.stats().rejected_peer, 1);
    assert_eq!(
        server.stats().requests,
        0,
        "the handler must not run for refused peers"
    );
    assert_eq!(server.connections(), 0);
}

#[test]
fn connections_beyond_the_limit_are_told_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let mut server = AdminServer::bind_with(&path, config).unwrap();
    let keep: Vec<UnixStream> = (0..2).map(|_| connect_raw(&path)).collect();
    let extra = connect_raw(&path);
    poll_until(&mut server, |s, _| s.stats().accepted == 3);
    assert_eq!(server.connections(), 2);
    let mut reader = BufReader::new(extra);
    let frame = read_frame(&mut reader);
    assert_eq!(frame.id, None);
    assert_eq!(frame.result.unwrap_err().code, ErrorCode::Busy);
    assert!(is_closed(&mut reader));
    // The admitted ones still work.
    let mut s = keep.into_iter().next().unwrap();
    s.write_all(Request::Ping.to_line(9).as_bytes()).unwrap();
    poll_until(&mut server, |_, n| n == 1);
    assert_eq!(read_frame(&mut BufReader::new(s)).id, Some(9));
}

#[test]
fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();
    let mut handler = common::handler;
    let t0 = Instant::now();
    let mut idle = connect_raw(&path);
    let mut busy = connect_raw(&path);
    server.poll_at(t0, &mut handler);
    assert_eq!(server.connections(), 2);
    server.poll_at(t0 + Duration::from_secs(4), &mut handler);
    assert_eq!(server.connections(), 2, "closed before the idle timeout");
    // Activity on one connection resets its clock.
    busy.write_all(Request::Ping.to_line(1).as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let t1 = t0 + Duration::from_secs(4);
    while server.poll_at(t1, &mut handler) == 0 {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(1));
    }
    server.poll_at(t0 + Duration::from_secs(6), &mut handler);
    assert_eq!(server.connections(), 1);
    assert_eq!(server.stats().idle_closed, 1);
    assert!(is_closed(&mut idle));
    server.poll_at(t1 + Duration::from_secs(5), &mut handler);
    assert_eq!(server.connections(), 0);
    let mut reader = BufReader::new(busy);
    assert_eq!(read_frame(&mut reader).id, Some(1));
    assert!(is_closed(&mut reader));
}

#[test]
fn poll_returns_at_once_when_nothing_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let mut server = AdminServer::bind(&path).unwrap();
    let _silent = connect_raw(&path);
    let mut handler = common::handler;
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(server.poll(&mut handler), 0);
    }
    assert!(start.elapsed() < Duration::from_secs(1), "poll blocked");
    assert_eq!(server.connections(), 1);
}

#[test]
fn client_times_out_when_the_daemon_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    // Bound but never polled: connect succeeds (backlog), nobody answers.
    let _server = AdminServer::bind(&path).unwrap();
    let mut c = AdminClient::connect_timeout(&path, Duration::from_millis(100)).unwrap();
    let err = c.call(Request::Ping).unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[test]
fn a_slow_reader_holds_back_its_requests_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir);
    let config = ServerConfig {
        // Stop answering after every response until the client has read it.
        max_pending_output: 1,
        ..ServerConfig::default()
    };
    let mut server = AdminServer::bind_with(&path, config).unwrap();
    const N: u64 = 2_000;
    let p = path.clone();
    let ids = with_client(&mut server, move || {
        let stream = connect_raw(&p);
        let mut writer = stream.try_clone().unwrap();
        // More than 64 KiB of complete lines in flight: must not be mistaken for a long line.
        let batch: String = (0..N).map(|id| Request::Ping.to_line(id)).collect();
        assert!(batch.len() > 64 * 1024);
        let writing = thread::spawn(move || writer.write_all(batch.as_bytes()).unwrap());
        let mut reader = BufReader::new(stream);
        let ids: Vec<Option<u64>> = (0..N)
            .map(|_| {
                let f = read_frame(&mut reader);
                assert!(f.result.is_ok(), "{f:?}");
                f.id
            })
            .collect();
        writing.join().unwrap();
        ids
    });
    assert_eq!(ids, (0..N).map(Some).collect::<Vec<_>>());
    assert_eq!(server.stats().bad_requests, 0);
}
