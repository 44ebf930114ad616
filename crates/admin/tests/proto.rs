//! Wire-format tests: every request and response survives JSON, and malformed lines get the
//! right error code with the request id whenever it could be read.

mod common;

use espada_admin::{AdminError, ErrorCode, Request, RequestFrame, Response, ResponseFrame};

fn all_requests() -> Vec<Request> {
    vec![
        Request::ShowSa { spi: None },
        Request::ShowSa { spi: Some(0) },
        Request::ShowSa {
            spi: Some(u32::MAX),
        },
        Request::ShowTunnels,
        Request::ShowDrops,
        Request::ShowWorkers,
        Request::Ping,
        Request::ShowIke,
        Request::Initiate {
            tunnel: "branch-a".into(),
        },
        Request::Rekey {
            tunnel: "branch-a".into(),
            ike: true,
        },
        Request::Rekey {
            tunnel: "b".into(),
            ike: false,
        },
        Request::Clear { tunnel: "b".into() },
    ]
}

fn all_responses() -> Vec<Response> {
    vec![
        Response::Sa(common::sas()),
        Response::Sa(vec![]),
        Response::Tunnels(common::tunnels()),
        Response::Drops(common::drops()),
        Response::Drops(Default::default()),
        Response::Workers(common::workers()),
        Response::Pong {
            version: "0.1.0".into(),
        },
    ]
}

fn parse_err(line: &str) -> (Option<u64>, AdminError) {
    match RequestFrame::parse(line.as_bytes()) {
        Ok(f) => panic!("{line} parsed as {f:?}"),
        Err(ResponseFrame { id, result: Err(e) }) => (id, e),
        Err(other) => panic!("error frame without error: {other:?}"),
    }
}

#[test]
fn every_request_round_trips() {
    for (i, req) in all_requests().into_iter().enumerate() {
        let line = req.to_line(i as u64 + 7);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        let frame = RequestFrame::parse(line.trim_end().as_bytes()).unwrap();
        assert_eq!(frame.id, i as u64 + 7);
        assert_eq!(frame.request, req);
    }
}

#[test]
fn request_wire_format_is_the_documented_one() {
    assert_eq!(
        Request::ShowSa { spi: Some(4096) }.to_line(7),
        "{\"v\":1,\"id\":7,\"cmd\":\"show.sa\",\"args\":{\"spi\":4096}}\n"
    );
    assert_eq!(
        Request::ShowSa { spi: None }.to_line(8),
        "{\"v\":1,\"id\":8,\"cmd\":\"show.sa\",\"args\":{}}\n"
    );
    assert_eq!(
        Request::Ping.to_line(9),
        "{\"v\":1,\"id\":9,\"cmd\":\"ping\",\"args\":{}}\n"
    );
    let cmds: Vec<&str> = all_requests().iter().map(Request::command).collect();
    for c in Request::COMMANDS {
        assert!(cmds.contains(&c), "{c} has no request");
    }
}

#[test]
fn hand_written_requests_parse() {
    let ok = |line: &str| RequestFrame::parse(line.as_bytes()).unwrap();
    assert_eq!(ok(r#"{"v":1,"id":1,"cmd":"ping"}"#).request, Request::Ping);
    assert_eq!(
        ok(r#"{"v":1,"id":1,"cmd":"show.tunnels","args":null}"#).request,
        Request::ShowTunnels
    );
    assert_eq!(
        ok(r#"{"cmd":"show.sa","args":{"spi":4096},"id":18446744073709551615,"v":1}"#),
        RequestFrame {
            id: u64::MAX,
            request: Request::ShowSa { spi: Some(4096) }
        }
    );
    assert_eq!(
        ok(r#"{"v":1,"id":2,"cmd":"show.sa","args":{"spi":null}}"#).request,
        Request::ShowSa { spi: None }
    );
    // A trailing CR (telnet-style line ending) is tolerated by the server, not the parser;
    // the parser itself accepts surrounding JSON whitespace.
    assert_eq!(ok("  {\"v\":1,\"id\":3,\"cmd\":\"ping\"}  ").id, 3);
}

#[test]
fn malformed_requests_get_bad_request() {
    let cases = [
        ("not json", None),
        ("[1,2,3]", None),
        (r#"{"v":1,"cmd":"ping"}"#, None),
        (r#"{"v":1,"id":-1,"cmd":"ping"}"#, None),
        (r#"{"v":1,"id":"7","cmd":"ping"}"#, None),
        (r#"{"id":7,"cmd":"ping"}"#, Some(7)),
        (r#"{"v":2,"id":7,"cmd":"ping"}"#, Some(7)),
        (r#"{"v":1,"id":7}"#, Some(7)),
        (r#"{"v":1,"id":7,"cmd":42}"#, Some(7)),
        (r#"{"v":1,"id":7,"cmd":"ping","extra":true}"#, Some(7)),
        (r#"{"v":1,"id":7,"cmd":"ping","args":{"x":1}}"#, Some(7)),
        (
            r#"{"v":1,"id":7,"cmd":"show.sa","args":{"spi":"0x1000"}}"#,
            Some(7),
        ),
        (
            r#"{"v":1,"id":7,"cmd":"show.sa","args":{"spi":4294967296}}"#,
            Some(7),
        ),
        (
            r#"{"v":1,"id":7,"cmd":"show.sa","args":{"spi":-1}}"#,
            Some(7),
        ),
        (
            r#"{"v":1,"id":7,"cmd":"show.sa","args":{"spii":1}}"#,
            Some(7),
        ),
        (r#"{"v":1,"id":7,"cmd":"show.sa","args":[4096]}"#, Some(7)),
    ];
    for (line, want_id) in cases {
        let (id, err) = parse_err(line);
        assert_eq!(err.code, ErrorCode::BadRequest, "{line}: {err}");
        assert_eq!(id, want_id, "{line}: {err}");
        assert!(!err.msg.is_empty());
    }
    let (_, err) = parse_err(r#"{"v":2,"id":7,"cmd":"ping"}"#);
    assert!(
        err.msg.contains("version 2") && err.msg.contains("v1"),
        "{err}"
    );
}

#[test]
fn unknown_command_is_its_own_code_and_lists_the_known_ones() {
    let (id, err) = parse_err(r#"{"v":1,"id":5,"cmd":"show.bgp"}"#);
    assert_eq!(id, Some(5));
    assert_eq!(err.code, ErrorCode::UnknownCommand);
    assert!(
        err.msg.contains("show.bgp") && err.msg.contains("show.workers"),
        "{err}"
    );
}

#[test]
fn every_response_round_trips() {
    for (i, resp) in all_responses().into_iter().enumerate() {
        let frame = ResponseFrame::ok(i as u64, resp);
        let line = frame.to_line();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert_eq!(
            ResponseFrame::parse(line.trim_end().as_bytes()).unwrap(),
            frame
        );
        // The --json payload is the same JSON as the `ok` member.
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let Ok(resp) = &frame.result else {
            unreachable!()
        };
        assert_eq!(value["ok"], serde_json::to_value(resp).unwrap());
    }
}

#[test]
fn every_error_round_trips() {
    let codes = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::NotFound,
        ErrorCode::Internal,
        ErrorCode::PermissionDenied,
        ErrorCode::Busy,
        ErrorCode::Other("rate_limited".into()),
    ];
    for (i, code) in codes.into_iter().enumerate() {
        for id in [None, Some(i as u64)] {
            let frame = ResponseFrame::error(id, AdminError::new(code.clone(), "msg \"quoted\"\n"));
            let back = ResponseFrame::parse(frame.to_line().trim_end().as_bytes()).unwrap();
            assert_eq!(back, frame);
        }
        assert_eq!(ErrorCode::from_wire(code.as_str()), code);
    }
}

#[test]
fn response_wire_format_is_the_documented_one() {
    let pong = ResponseFrame::ok(
        7,
        Response::Pong {
            version: "0.1.0".into(),
        },
    );
    assert_eq!(
        pong.to_line(),
        "{\"id\":7,\"ok\":{\"pong\":{\"version\":\"0.1.0\"}}}\n"
    );
    let err = ResponseFrame::error(Some(7), AdminError::not_found("no SA with SPI 0x00001000"));
    assert_eq!(
        err.to_line(),
        "{\"id\":7,\"err\":{\"code\":\"not_found\",\"msg\":\"no SA with SPI 0x00001000\"}}\n"
    );
    let anon = ResponseFrame::error(None, AdminError::bad_request("x"));
    assert!(anon.to_line().starts_with("{\"id\":null,"));
    assert!(
        ResponseFrame::ok(1, Response::Tunnels(vec![]))
            .to_line()
            .contains("\"ok\":{\"tunnels\":[]}")
    );
}

#[test]
fn response_lines_need_exactly_one_of_ok_and_err() {
    for bad in [
        r#"{"id":1}"#,
        r#"{"id":1,"ok":{"pong":{"version":"x"}},"err":{"code":"internal","msg":"x"}}"#,
        r#"{"id":1,"ok":{"nonsense":[]}}"#,
        r#"{"id":1,"err":{"code":"internal"}}"#,
        r#"{"id":1,"ok":{"pong":{"version":"x"}},"extra":1}"#,
    ] {
        assert!(ResponseFrame::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn responses_know_which_request_they_answer() {
    let reqs = all_requests();
    let pairs = [
        (Response::Sa(vec![]), "show.sa"),
        (Response::Tunnels(vec![]), "show.tunnels"),
        (Response::Drops(Default::default()), "show.drops"),
        (Response::Workers(vec![]), "show.workers"),
        (
            Response::Pong {
                version: String::new(),
            },
            "ping",
        ),
        (Response::Ike(Default::default()), "show.ike"),
    ];
    for (resp, cmd) in pairs {
        for req in &reqs {
            assert_eq!(
                resp.answers(req),
                req.command() == cmd,
                "{resp:?} vs {req:?}"
            );
        }
    }
}

#[test]
fn sa_view_carries_no_key_material() {
    let sa = common::sas().remove(0);
    let value = serde_json::to_value(&sa).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "tunnel",
        "direction",
        "spi",
        "owner_worker",
        "algorithm",
        "encapsulation",
        "local",
        "remote",
        "esn",
        "seq",
        "replay_window",
        "replay_bitmap",
        "lifetime",
        "counters",
        "crypto",
        "state",
    ];
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        keys, expected,
        "a field was added to SaView: make sure it is not key material, then update this list"
    );
    let text = value.to_string().to_lowercase();
    for word in ["key", "secret", "psk", "salt", "nonce"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
    assert_eq!(value["direction"], "inbound");
}
