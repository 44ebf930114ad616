//! The IKEv2 wire format (RFC 7296 §3).
//!
//! One module per structure of §3, each with `parse` (never panics, checks every length)
//! and `emit` (byte-exact for whatever `parse` accepted, RESERVED fields aside, which are
//! emitted as zero): [`header`], [`sa`], [`ke`], [`id`], [`auth`], [`nonce`], [`notify`],
//! [`delete`], [`vendor`], [`ts`], [`sk`]; the generic payload header and chains in
//! [`payload`]; whole messages in [`message`]. [`enums`] holds the IANA registries and
//! [`codec`] the bounded reader and writer. [`protect`] encrypts and decrypts messages (the
//! SK payload, RFC 5282) and [`fragment`] splits and reassembles them (RFC 7383).
//! [`rules`] says which payloads each exchange's messages may carry; [`fuzz_check`] holds
//! the properties the fuzz targets check.

pub mod auth;
pub mod codec;
pub mod delete;
pub mod enums;
pub mod error;
pub mod fragment;
pub mod fuzz_check;
pub mod header;
pub mod id;
pub mod ke;
pub mod message;
pub mod nonce;
pub mod notify;
pub mod payload;
pub mod protect;
pub mod rules;
pub mod sa;
pub mod sk;
pub mod ts;
pub mod vendor;

pub use auth::AuthPayload;
pub use delete::Delete;
pub use enums::{
    AuthMethod, DhGroup, EncrId, EsnId, ExchangeType, IdType, IntegId, NotifyType, PayloadType,
    PrfId, ProtocolId, TransformType, TsType,
};
pub use error::ParseError;
pub use fragment::{Reassembler, ReassemblyStats, seal_fragments};
pub use header::Header;
pub use id::Identification;
pub use ke::KePayload;
pub use message::Message;
pub use nonce::Nonce;
pub use notify::Notify;
pub use payload::{Payload, emit_payloads, parse_payloads};
pub use protect::{ProtectError, open, seal};
pub use sa::{Attribute, AttributeValue, Proposal, SaPayload, Transform};
pub use sk::{Encrypted, EncryptedFragment};
pub use ts::{TrafficSelector, TrafficSelectors};
