//! Which payloads each message may carry, and how many of each (RFC 7296 §1.2–§1.4, in the
//! manner of strongSwan's per-exchange message rules).
//!
//! IKE_SA_INIT is checked as sent (it is not encrypted); the other exchanges are checked on
//! the payloads inside SK, i.e. on what [`super::protect::open`] or the
//! [`super::fragment::Reassembler`] returns (their outside is SK or SKF alone, which those
//! already enforce). SK and SKF are never allowed among the checked payloads.
//!
//! A payload of a type the RFC does not define, which can only have reached here with its
//! critical bit clear, is ignored (§2.5). A type that is defined but not listed for the
//! message is a syntax error, as is a count out of bounds. Minimums apply only to requests:
//! a response may be a bare error notification (§2.21).

use super::enums::{ExchangeType, PayloadType};
use super::error::ParseError;
use super::payload::Payload;
use PayloadType as P;

/// How many payloads of one type a message may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The payload type.
    pub ty: PayloadType,
    /// At least this many.
    pub min: u8,
    /// At most this many.
    pub max: u8,
}

/// Most notifications in one message (strongSwan allows 20; some peers send more).
const MAX_NOTIFY: u8 = 32;
/// Most Vendor ID payloads in one message.
const MAX_VENDOR_ID: u8 = 20;
/// Most Delete payloads in one message.
const MAX_DELETE: u8 = 20;
/// Most CERT payloads in one message (a chain).
const MAX_CERT: u8 = 8;
/// Most CERTREQ payloads in one message.
const MAX_CERTREQ: u8 = 20;

const fn r(ty: PayloadType, min: u8, max: u8) -> Rule {
    Rule { ty, min, max }
}

static IKE_SA_INIT_REQUEST: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::SA, 1, 1),
    r(P::KE, 1, 1),
    r(P::NONCE, 1, 1),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

static IKE_SA_INIT_RESPONSE: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::SA, 0, 1),
    r(P::KE, 0, 1),
    r(P::NONCE, 0, 1),
    r(P::CERTREQ, 0, MAX_CERTREQ),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

/// IKE_AUTH request: IDi and AUTH are absent in the later rounds of EAP (§2.16), so nothing
/// is mandatory here; the exchange checks what its state needs.
static IKE_AUTH_REQUEST: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::IDI, 0, 1),
    r(P::CERT, 0, MAX_CERT),
    r(P::CERTREQ, 0, MAX_CERTREQ),
    r(P::IDR, 0, 1),
    r(P::AUTH, 0, 1),
    r(P::EAP, 0, 1),
    r(P::CP, 0, 1),
    r(P::SA, 0, 1),
    r(P::TSI, 0, 1),
    r(P::TSR, 0, 1),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

static IKE_AUTH_RESPONSE: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::IDR, 0, 1),
    r(P::CERT, 0, MAX_CERT),
    r(P::AUTH, 0, 1),
    r(P::EAP, 0, 1),
    r(P::CP, 0, 1),
    r(P::SA, 0, 1),
    r(P::TSI, 0, 1),
    r(P::TSR, 0, 1),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

static CREATE_CHILD_SA_REQUEST: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::SA, 1, 1),
    r(P::NONCE, 1, 1),
    r(P::KE, 0, 1),
    r(P::TSI, 0, 1),
    r(P::TSR, 0, 1),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

static CREATE_CHILD_SA_RESPONSE: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::SA, 0, 1),
    r(P::NONCE, 0, 1),
    r(P::KE, 0, 1),
    r(P::TSI, 0, 1),
    r(P::TSR, 0, 1),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

static INFORMATIONAL: &[Rule] = &[
    r(P::NOTIFY, 0, MAX_NOTIFY),
    r(P::DELETE, 0, MAX_DELETE),
    r(P::CP, 0, 1),
    r(P::VENDOR_ID, 0, MAX_VENDOR_ID),
];

/// (exchange, is_response) → rules.
static TABLE: &[(ExchangeType, bool, &[Rule])] = &[
    (ExchangeType::IKE_SA_INIT, false, IKE_SA_INIT_REQUEST),
    (ExchangeType::IKE_SA_INIT, true, IKE_SA_INIT_RESPONSE),
    (ExchangeType::IKE_AUTH, false, IKE_AUTH_REQUEST),
    (ExchangeType::IKE_AUTH, true, IKE_AUTH_RESPONSE),
    (
        ExchangeType::CREATE_CHILD_SA,
        false,
        CREATE_CHILD_SA_REQUEST,
    ),
    (
        ExchangeType::CREATE_CHILD_SA,
        true,
        CREATE_CHILD_SA_RESPONSE,
    ),
    (ExchangeType::INFORMATIONAL, false, INFORMATIONAL),
    (ExchangeType::INFORMATIONAL, true, INFORMATIONAL),
];

/// The rules of a message, or `None` for an exchange type RFC 7296 does not define.
pub fn rules(exchange: ExchangeType, is_response: bool) -> Option<&'static [Rule]> {
    TABLE
        .iter()
        .find(|(e, r, _)| *e == exchange && *r == is_response)
        .map(|(_, _, rules)| *rules)
}

/// How a message breaks its rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The exchange type has no rules.
    UnknownExchange(ExchangeType),
    /// A payload of this type may not appear in this message.
    NotAllowed(PayloadType),
    /// More payloads of this type than allowed.
    TooMany(PayloadType),
    /// A mandatory payload of this type is missing.
    Missing(PayloadType),
}

impl Violation {
    /// The syntax error a responder answers with (INVALID_SYNTAX, §2.21).
    pub fn to_parse_error(self) -> ParseError {
        ParseError::InvalidSyntax(match self {
            Violation::UnknownExchange(_) => "unknown exchange type",
            Violation::NotAllowed(_) => "payload not allowed in this message",
            Violation::TooMany(_) => "payload repeated more often than allowed",
            Violation::Missing(_) => "mandatory payload missing",
        })
    }
}

/// The first way `payloads` break the rules of their message, if any.
pub fn violation(
    exchange: ExchangeType,
    is_response: bool,
    payloads: &[Payload],
) -> Option<Violation> {
    let Some(rules) = rules(exchange, is_response) else {
        return Some(Violation::UnknownExchange(exchange));
    };
    let mut counts = vec![0usize; rules.len()];
    for p in payloads {
        let ty = p.payload_type();
        match rules.iter().position(|r| r.ty == ty) {
            Some(i) => {
                counts[i] += 1;
                if counts[i] > usize::from(rules[i].max) {
                    return Some(Violation::TooMany(ty));
                }
            }
            // Types the RFCs define carry names; others were non-critical and are skipped.
            None if ty.name().is_some() => return Some(Violation::NotAllowed(ty)),
            None => {}
        }
    }
    rules
        .iter()
        .zip(&counts)
        .find(|(r, n)| **n < usize::from(r.min))
        .map(|(r, _)| Violation::Missing(r.ty))
}

/// Checks `payloads` (the inner ones for encrypted exchanges) against the rules of their
/// message; a violation is [`ParseError::InvalidSyntax`].
pub fn check(
    exchange: ExchangeType,
    is_response: bool,
    payloads: &[Payload],
) -> Result<(), ParseError> {
    violation(exchange, is_response, payloads).map_or(Ok(()), |v| Err(v.to_parse_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::enums::NotifyType;
    use crate::msgs::message::tests::ike_sa_init;
    use crate::msgs::nonce::Nonce;
    use crate::msgs::notify::Notify;
    use crate::msgs::sk::Encrypted;

    fn notify(ty: NotifyType) -> Payload {
        Payload::Notify(Notify::new(ty, vec![]))
    }

    fn unknown(ty: u8) -> Payload {
        Payload::Unknown {
            ty: PayloadType(ty),
            critical: false,
            body: vec![],
        }
    }

    #[test]
    fn test_ike_sa_init() {
        let req = ike_sa_init().payloads;
        assert_eq!(check(ExchangeType::IKE_SA_INIT, false, &req), Ok(()));
        // Each mandatory payload removed in turn.
        for (i, want) in [PayloadType::SA, PayloadType::KE, PayloadType::NONCE]
            .into_iter()
            .enumerate()
        {
            let mut p = req.clone();
            p.remove(i);
            assert_eq!(
                violation(ExchangeType::IKE_SA_INIT, false, &p),
                Some(Violation::Missing(want))
            );
        }
        // A bare COOKIE or INVALID_KE_PAYLOAD response is fine; a second Nonce is not.
        let cookie = [notify(NotifyType::COOKIE)];
        assert_eq!(check(ExchangeType::IKE_SA_INIT, true, &cookie), Ok(()));
        let mut two = req.clone();
        two.push(Payload::Nonce(Nonce(vec![0; 16])));
        assert_eq!(
            violation(ExchangeType::IKE_SA_INIT, false, &two),
            Some(Violation::TooMany(PayloadType::NONCE))
        );
    }

    #[test]
    fn test_not_allowed() {
        let table: &[(ExchangeType, bool, Payload, Violation)] = &[
            (
                ExchangeType::INFORMATIONAL,
                false,
                ike_sa_init().payloads[0].clone(),
                Violation::NotAllowed(PayloadType::SA),
            ),
            (
                ExchangeType::IKE_AUTH,
                false,
                Payload::Sk(Encrypted {
                    first_inner: PayloadType::NONE,
                    body: vec![],
                }),
                Violation::NotAllowed(PayloadType::SK),
            ),
            (
                ExchangeType::IKE_AUTH,
                true,
                unknown(38),
                Violation::NotAllowed(PayloadType::CERTREQ),
            ),
            (
                ExchangeType::IKE_SA_INIT,
                false,
                unknown(47),
                Violation::NotAllowed(PayloadType::CP),
            ),
            (
                ExchangeType(99),
                false,
                notify(NotifyType::COOKIE),
                Violation::UnknownExchange(ExchangeType(99)),
            ),
        ];
        for (ex, resp, p, want) in table {
            let mut payloads = vec![p.clone()];
            if *ex == ExchangeType::IKE_SA_INIT {
                payloads.extend(ike_sa_init().payloads);
            }
            assert_eq!(
                violation(*ex, *resp, &payloads),
                Some(*want),
                "{ex:?} {p:?}"
            );
            assert!(matches!(
                check(*ex, *resp, &payloads),
                Err(ParseError::InvalidSyntax(_))
            ));
        }
    }

    #[test]
    fn test_unknown_types_skipped_and_limits() {
        let p = vec![
            unknown(200),
            unknown(200),
            notify(NotifyType::INITIAL_CONTACT),
        ];
        assert_eq!(check(ExchangeType::INFORMATIONAL, false, &p), Ok(()));
        // The empty INFORMATIONAL (liveness check) and its empty response.
        assert_eq!(check(ExchangeType::INFORMATIONAL, true, &[]), Ok(()));
        let many = vec![notify(NotifyType(40000)); usize::from(MAX_NOTIFY) + 1];
        assert_eq!(
            violation(ExchangeType::INFORMATIONAL, false, &many),
            Some(Violation::TooMany(PayloadType::NOTIFY))
        );
        assert_eq!(
            check(ExchangeType::INFORMATIONAL, false, &many[1..]),
            Ok(())
        );
    }
}
