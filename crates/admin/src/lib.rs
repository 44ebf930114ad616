//! Admin API shared by the espada daemon and the `espada` CLI.
//!
//! The daemon's control thread owns an [`AdminServer`] and calls [`AdminServer::poll`] every
//! loop iteration with a handler that turns a [`Request`] into a [`Response`] built from the
//! [`view`] types. The CLI connects with an [`AdminClient`], [`AdminClient::call`]s one request
//! and prints the answer with [`render::render_table`] or [`render::render_json`].
//!
//! The wire format ([`proto`]) is newline-delimited JSON on a `SOCK_STREAM` unix socket:
//! `{"v":1,"id":7,"cmd":"show.sa","args":{"spi":4096}}` →
//! `{"id":7,"ok":{"sa":[…]}}` or `{"id":7,"err":{"code":"not_found","msg":"…"}}`.
//!
//! Access control: the socket is mode 0600 in a 0700 directory, and every connection's peer
//! credentials (`SO_PEERCRED`) must be root or the daemon's own user ([`server::allowed`]).
//! Views never carry key material.
//!
//! ```no_run
//! use espada_admin::{AdminClient, Request, render};
//! let mut client = AdminClient::connect("/run/espada/admin.sock".as_ref())?;
//! let answer = client.call(Request::ShowTunnels)?;
//! print!("{}", render::render_table(&answer));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod proto;
pub mod render;
pub mod server;
pub mod view;

pub use client::{AdminClient, ClientError};
pub use proto::{AdminError, ErrorCode, Request, RequestFrame, Response, ResponseFrame};
pub use server::{AdminServer, ServerConfig, ServerStats};
pub use view::{
    Direction, DropsView, IkeReport, IkeView, LifetimeView, SaCountersView, SaView, TunnelSaView,
    TunnelView, UnknownSpiView, WorkerView,
};
