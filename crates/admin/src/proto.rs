//! Wire protocol: newline-delimited JSON, one request or response per line.
//!
//! ```text
//! → {"v":1,"id":7,"cmd":"show.sa","args":{"spi":4096}}
//! ← {"id":7,"ok":{"sa":[…]}}
//! ← {"id":7,"err":{"code":"not_found","msg":"no SA with SPI 0x00001000"}}
//! ```
//!
//! Lines are parsed completely into typed values ([`Request`], [`ResponseFrame`]) before anything
//! acts on them; unknown fields are rejected. The `ok` payload is an externally tagged
//! [`Response`] (`{"sa":[…]}`, `{"tunnels":[…]}`, `{"drops":{…}}`, `{"workers":[…]}`,
//! `{"pong":{"version":"…"}}`), so a response line can be decoded without knowing the request.
//! A response with `"id":null` is a connection-level error sent before any request was read
//! (peer not allowed, too many connections) or for a line whose `id` could not be read.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::view::{DropsView, IkeReport, SaView, TunnelView, WorkerView};

/// Protocol version spoken by this crate (the `"v"` field of requests).
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the server accepts, newline excluded.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// A typed admin request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `show.sa`: every SA, or the SAs with one SPI (`not_found` if there are none).
    ShowSa {
        /// Restrict to this SPI.
        spi: Option<u32>,
    },
    /// `show.tunnels`: every configured tunnel.
    ShowTunnels,
    /// `show.drops`: drop counters and recent unknown-SPI events.
    ShowDrops,
    /// `show.workers`: per-worker load and counters.
    ShowWorkers,
    /// `ping`: liveness check, answered with the daemon's version.
    Ping,
    /// `show.ike`: the IKE state of every negotiated tunnel.
    ShowIke,
    /// `tunnel.initiate`: start IKEv2 for a negotiated tunnel now.
    Initiate {
        /// Tunnel name.
        tunnel: String,
    },
    /// `tunnel.rekey`: rekey a tunnel's CHILD_SA, or with `ike` its IKE SA.
    Rekey {
        /// Tunnel name.
        tunnel: String,
        /// The IKE SA (else the CHILD_SA).
        ike: bool,
    },
    /// `tunnel.clear`: delete a tunnel's IKE SA and its CHILD_SAs.
    Clear {
        /// Tunnel name.
        tunnel: String,
    },
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ShowSaArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spi: Option<u32>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TunnelArgs {
    tunnel: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ike: bool,
}

impl Request {
    /// Every command name, in the order `help` should list them.
    pub const COMMANDS: [&'static str; 9] = [
        "show.sa",
        "show.tunnels",
        "show.ike",
        "show.drops",
        "show.workers",
        "tunnel.initiate",
        "tunnel.rekey",
        "tunnel.clear",
        "ping",
    ];

    /// The wire command name, e.g. `"show.sa"`.
    pub fn command(&self) -> &'static str {
        match self {
            Request::ShowSa { .. } => "show.sa",
            Request::ShowTunnels => "show.tunnels",
            Request::ShowDrops => "show.drops",
            Request::ShowWorkers => "show.workers",
            Request::Ping => "ping",
            Request::ShowIke => "show.ike",
            Request::Initiate { .. } => "tunnel.initiate",
            Request::Rekey { .. } => "tunnel.rekey",
            Request::Clear { .. } => "tunnel.clear",
        }
    }

    /// The wire `args` object.
    pub fn args(&self) -> Value {
        let args = match self {
            Request::ShowSa { spi } => serde_json::to_value(ShowSaArgs { spi: *spi }),
            Request::Initiate { tunnel } | Request::Clear { tunnel } => {
                serde_json::to_value(TunnelArgs {
                    tunnel: tunnel.clone(),
                    ike: false,
                })
            }
            Request::Rekey { tunnel, ike } => serde_json::to_value(TunnelArgs {
                tunnel: tunnel.clone(),
                ike: *ike,
            }),
            _ => serde_json::to_value(NoArgs {}),
        };
        args.unwrap_or_else(|_| Value::Object(Default::default()))
    }

    /// Builds a request from its wire command and `args` (absent or `null` = no arguments).
    pub fn from_wire(cmd: &str, args: Option<Value>) -> Result<Request, AdminError> {
        let args = args.unwrap_or_else(|| Value::Object(Default::default()));
        if !args.is_object() {
            return Err(AdminError::bad_request(format!(
                "\"args\" of {cmd} must be an object"
            )));
        }
        let bad_args =
            |e: serde_json::Error| AdminError::bad_request(format!("bad arguments for {cmd}: {e}"));
        match cmd {
            "show.sa" => {
                let a: ShowSaArgs = serde_json::from_value(args).map_err(bad_args)?;
                Ok(Request::ShowSa { spi: a.spi })
            }
            "show.tunnels" | "show.ike" | "show.drops" | "show.workers" | "ping" => {
                let NoArgs {} = serde_json::from_value(args).map_err(bad_args)?;
                Ok(match cmd {
                    "show.tunnels" => Request::ShowTunnels,
                    "show.ike" => Request::ShowIke,
                    "show.drops" => Request::ShowDrops,
                    "show.workers" => Request::ShowWorkers,
                    _ => Request::Ping,
                })
            }
            "tunnel.initiate" | "tunnel.rekey" | "tunnel.clear" => {
                let a: TunnelArgs = serde_json::from_value(args).map_err(bad_args)?;
                Ok(match cmd {
                    "tunnel.initiate" if !a.ike => Request::Initiate { tunnel: a.tunnel },
                    "tunnel.clear" if !a.ike => Request::Clear { tunnel: a.tunnel },
                    "tunnel.rekey" => Request::Rekey {
                        tunnel: a.tunnel,
                        ike: a.ike,
                    },
                    _ => {
                        return Err(bad_args(serde_json::Error::custom(
                            "\"ike\" is for tunnel.rekey",
                        )));
                    }
                })
            }
            other => Err(AdminError::new(
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command {other:?}; known commands: {}",
                    Request::COMMANDS.join(", ")
                ),
            )),
        }
    }

    /// Encodes the request as one wire line, trailing newline included.
    pub fn to_line(&self, id: u64) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            v: u32,
            id: u64,
            cmd: &'a str,
            args: Value,
        }
        let wire = Wire {
            v: PROTOCOL_VERSION,
            id,
            cmd: self.command(),
            args: self.args(),
        };
        let mut line = serde_json::to_string(&wire)
            .unwrap_or_else(|_| format!("{{\"v\":1,\"id\":{id},\"cmd\":\"{}\"}}", self.command()));
        line.push('\n');
        line
    }
}

/// A request line as received: its id and the typed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFrame {
    /// Client-chosen id, echoed in the response.
    pub id: u64,
    /// The request.
    pub request: Request,
}

impl RequestFrame {
    /// Parses one request line (without its newline; a trailing `\r` is tolerated).
    ///
    /// On failure returns the error response to send, carrying the request's id when it could
    /// be read.
    pub fn parse(line: &[u8]) -> Result<RequestFrame, ResponseFrame> {
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            ResponseFrame::error(None, AdminError::bad_request(format!("not JSON: {e}")))
        })?;
        let Value::Object(mut obj) = value else {
            return Err(ResponseFrame::error(
                None,
                AdminError::bad_request("a request must be a JSON object"),
            ));
        };
        let id = match obj.remove("id") {
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            _ => {
                return Err(ResponseFrame::error(
                    None,
                    AdminError::bad_request("missing or invalid \"id\" (an unsigned integer)"),
                ));
            }
        };
        let fail = |e: AdminError| ResponseFrame::error(id, e);
        match obj.remove("v") {
            Some(v) if v.as_u64() == Some(PROTOCOL_VERSION.into()) => {}
            Some(v) => {
                return Err(fail(AdminError::bad_request(format!(
                    "unsupported protocol version {v}; this daemon speaks v{PROTOCOL_VERSION}"
                ))));
            }
            None => return Err(fail(AdminError::bad_request("missing \"v\""))),
        }
        let cmd = match obj.remove("cmd") {
            Some(Value::String(s)) => s,
            _ => return Err(fail(AdminError::bad_request("missing or invalid \"cmd\""))),
        };
        let args = obj.remove("args").filter(|a| !a.is_null());
        if let Some(extra) = obj.keys().next() {
            return Err(fail(AdminError::bad_request(format!(
                "unknown field {extra:?} in request"
            ))));
        }
        let request = Request::from_wire(&cmd, args).map_err(fail)?;
        Ok(RequestFrame {
            id: id.unwrap_or_default(),
            request,
        })
    }
}

/// A successful response payload (the `ok` member of a response line).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::ShowSa`].
    Sa(Vec<SaView>),
    /// Answer to [`Request::ShowTunnels`].
    Tunnels(Vec<TunnelView>),
    /// Answer to [`Request::ShowDrops`].
    Drops(DropsView),
    /// Answer to [`Request::ShowWorkers`].
    Workers(Vec<WorkerView>),
    /// Answer to [`Request::Ping`].
    Pong {
        /// Daemon version string.
        version: String,
    },
    /// Answer to [`Request::ShowIke`].
    Ike(IkeReport),
    /// Answer to a tunnel command: what was done.
    Done {
        /// One line for the operator.
        message: String,
    },
}

impl Response {
    /// Whether this is the kind of response `request` expects.
    pub fn answers(&self, request: &Request) -> bool {
        matches!(
            (self, request),
            (Response::Sa(_), Request::ShowSa { .. })
                | (Response::Tunnels(_), Request::ShowTunnels)
                | (Response::Drops(_), Request::ShowDrops)
                | (Response::Workers(_), Request::ShowWorkers)
                | (Response::Pong { .. }, Request::Ping)
                | (Response::Ike(_), Request::ShowIke)
                | (
                    Response::Done { .. },
                    Request::Initiate { .. } | Request::Rekey { .. } | Request::Clear { .. }
                )
        )
    }
}

/// Machine-readable error code (the `code` member of `err`). An open set: codes this crate
/// does not know survive a round trip as [`ErrorCode::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `bad_request`: malformed line, bad arguments, line too long, unsupported version.
    BadRequest,
    /// `unknown_command`: `cmd` names no command.
    UnknownCommand,
    /// `not_found`: the object asked for does not exist (e.g. an SPI).
    NotFound,
    /// `internal`: the daemon failed to answer.
    Internal,
    /// `permission_denied`: the peer is neither root nor the daemon's user.
    PermissionDenied,
    /// `busy`: too many admin connections.
    Busy,
    /// Any other code (from a newer daemon).
    Other(String),
}

impl ErrorCode {
    /// The wire spelling, e.g. `"not_found"`.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Busy => "busy",
            ErrorCode::Other(s) => s,
        }
    }

    /// Parses the wire spelling; unknown codes become [`ErrorCode::Other`].
    pub fn from_wire(s: &str) -> ErrorCode {
        match s {
            "bad_request" => ErrorCode::BadRequest,
            "unknown_command" => ErrorCode::UnknownCommand,
            "not_found" => ErrorCode::NotFound,
            "internal" => ErrorCode::Internal,
            "permission_denied" => ErrorCode::PermissionDenied,
            "busy" => ErrorCode::Busy,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::from_wire(&s))
    }
}

/// An error answer (the `err` member of a response line). Handlers return it too.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message, shown to the operator as is.
    pub msg: String,
}

impl AdminError {
    /// An error with any code.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> AdminError {
        AdminError {
            code,
            msg: msg.into(),
        }
    }

    /// A `bad_request` error.
    pub fn bad_request(msg: impl Into<String>) -> AdminError {
        AdminError::new(ErrorCode::BadRequest, msg)
    }

    /// A `not_found` error.
    pub fn not_found(msg: impl Into<String>) -> AdminError {
        AdminError::new(ErrorCode::NotFound, msg)
    }

    /// An `internal` error.
    pub fn internal(msg: impl Into<String>) -> AdminError {
        AdminError::new(ErrorCode::Internal, msg)
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.msg, self.code)
    }
}

impl std::error::Error for AdminError {}

/// A response line: the id it answers and either a payload or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    /// Id of the request answered; `None` for connection-level errors.
    pub id: Option<u64>,
    /// The answer.
    pub result: Result<Response, AdminError>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<Response>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<AdminError>,
}

impl ResponseFrame {
    /// A successful response to request `id`.
    pub fn ok(id: u64, response: Response) -> ResponseFrame {
        ResponseFrame {
            id: Some(id),
            result: Ok(response),
        }
    }

    /// An error response (`id` `None` when the request's id is unknown).
    pub fn error(id: Option<u64>, error: AdminError) -> ResponseFrame {
        ResponseFrame {
            id,
            result: Err(error),
        }
    }

    /// Encodes the frame as one wire line, trailing newline included.
    pub fn to_line(&self) -> String {
        let (ok, err) = match &self.result {
            Ok(r) => (Some(r.clone()), None),
            Err(e) => (None, Some(e.clone())),
        };
        let raw = RawResponse {
            id: self.id,
            ok,
            err,
        };
        let mut line = serde_json::to_string(&raw).unwrap_or_else(|e| {
            // Views hold only strings, integers and string-keyed maps, so this cannot happen;
            // answer with an error rather than panic in the daemon's control thread.
            serde_json::json!({"id": self.id, "err": {"code": "internal", "msg": format!("cannot encode response: {e}")}})
                .to_string()
        });
        line.push('\n');
        line
    }

    /// Parses one response line (without its newline).
    pub fn parse(line: &[u8]) -> Result<ResponseFrame, serde_json::Error> {
        let raw: RawResponse = serde_json::from_slice(line)?;
        let result = match (raw.ok, raw.err) {
            (Some(ok), None) => Ok(ok),
            (None, Some(err)) => Err(err),
            (Some(_), Some(_)) => {
                return Err(serde_json::Error::custom(
                    "response has both \"ok\" and \"err\"",
                ));
            }
            (None, None) => {
                return Err(serde_json::Error::custom(
                    "response has neither \"ok\" nor \"err\"",
                ));
            }
        };
        Ok(ResponseFrame { id: raw.id, result })
    }
}
