//! Why a message or payload did not parse, and the notification a responder answers with.

use super::enums::{NotifyType, PayloadType};

/// A message, or a payload in it, is malformed (RFC 7296 §2.21, §3).
///
/// `Display` names the rule that was broken, never the bytes that broke it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A length, count or field violates §3 (the text says which); answered with
    /// INVALID_SYNTAX.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(&'static str),
    /// A payload of a type we do not understand has its critical bit set (§2.5, §3.2);
    /// answered with UNSUPPORTED_CRITICAL_PAYLOAD carrying the type.
    #[error("unsupported critical payload {0:?}")]
    UnsupportedCritical(PayloadType),
    /// The header's major version is not 2 (§2.5, §3.1); answered with
    /// INVALID_MAJOR_VERSION.
    #[error("unsupported major version {0}")]
    InvalidMajorVersion(u8),
}

impl ParseError {
    /// The error notification a responder answers with (§3.10.1).
    pub fn notify(&self) -> NotifyType {
        match self {
            ParseError::InvalidSyntax(_) => NotifyType::INVALID_SYNTAX,
            ParseError::UnsupportedCritical(_) => NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            ParseError::InvalidMajorVersion(_) => NotifyType::INVALID_MAJOR_VERSION,
        }
    }

    /// The Notification Data of that notification: the one-octet payload type for
    /// UNSUPPORTED_CRITICAL_PAYLOAD, empty otherwise (for INVALID_MAJOR_VERSION the version
    /// we support goes in the reply's header, §3.10.1).
    pub fn notify_data(&self) -> Vec<u8> {
        match self {
            ParseError::UnsupportedCritical(ty) => vec![ty.0],
            ParseError::InvalidSyntax(_) | ParseError::InvalidMajorVersion(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_for_each_error() {
        let table = [
            (
                ParseError::InvalidSyntax("x"),
                NotifyType::INVALID_SYNTAX,
                vec![],
            ),
            (
                ParseError::UnsupportedCritical(PayloadType(99)),
                NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                vec![99],
            ),
            (
                ParseError::InvalidMajorVersion(3),
                NotifyType::INVALID_MAJOR_VERSION,
                vec![],
            ),
        ];
        for (e, ty, data) in table {
            assert_eq!(e.notify(), ty);
            assert_eq!(e.notify_data(), data);
        }
        assert_eq!(
            ParseError::InvalidSyntax("proposal length").to_string(),
            "invalid syntax: proposal length"
        );
    }
}
