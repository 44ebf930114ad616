//! IANA registries of IKEv2 (RFC 7296 §3, the "Internet Key Exchange Version 2 (IKEv2)
//! Parameters" registry) as newtypes over their wire integers.
//!
//! Each type holds the raw value, so a value we have no name for parses, compares and emits
//! unchanged; the associated constants name the values we know, and `Debug` prints the name
//! (`NotifyType(TS_UNACCEPTABLE)`) or the number (`NotifyType(12345)`).

use core::fmt;

/// Defines a registry newtype with named constants, `name()` and a name-printing `Debug`.
macro_rules! registry {
    (
        $(#[$meta:meta])*
        $name:ident($int:ty) {
            $( $(#[$cmeta:meta])* $cname:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $cname: $name = $name($value); )*

            /// The registry's name for this value, if it has one.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$cname => Some(stringify!($cname)), )*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, concat!(stringify!($name), "({})"), n),
                    None => write!(f, concat!(stringify!($name), "({})"), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}", self.0),
                }
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

registry! {
    /// Exchange Type in the IKE header (RFC 7296 §3.1).
    ExchangeType(u8) {
        /// IKE_SA_INIT (§1.2).
        IKE_SA_INIT = 34,
        /// IKE_AUTH (§1.2).
        IKE_AUTH = 35,
        /// CREATE_CHILD_SA (§1.3).
        CREATE_CHILD_SA = 36,
        /// INFORMATIONAL (§1.4).
        INFORMATIONAL = 37,
    }
}

registry! {
    /// Payload type, as carried in Next Payload fields (RFC 7296 §3.2; RFC 7383 §2.5).
    PayloadType(u8) {
        /// No Next Payload: the end of a chain.
        NONE = 0,
        /// Security Association (§3.3).
        SA = 33,
        /// Key Exchange (§3.4).
        KE = 34,
        /// Identification - Initiator (§3.5).
        IDI = 35,
        /// Identification - Responder (§3.5).
        IDR = 36,
        /// Certificate (§3.6).
        CERT = 37,
        /// Certificate Request (§3.7).
        CERTREQ = 38,
        /// Authentication (§3.8).
        AUTH = 39,
        /// Nonce (§3.9).
        NONCE = 40,
        /// Notify (§3.10).
        NOTIFY = 41,
        /// Delete (§3.11).
        DELETE = 42,
        /// Vendor ID (§3.12).
        VENDOR_ID = 43,
        /// Traffic Selector - Initiator (§3.13).
        TSI = 44,
        /// Traffic Selector - Responder (§3.13).
        TSR = 45,
        /// Encrypted and Authenticated (§3.14).
        SK = 46,
        /// Configuration (§3.15).
        CP = 47,
        /// Extensible Authentication (§3.16).
        EAP = 48,
        /// Encrypted and Authenticated Fragment (RFC 7383 §2.5).
        SKF = 53,
    }
}

registry! {
    /// Protocol ID of a proposal, notification or deletion (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        /// No protocol: a notification without SPI (§3.10).
        NONE = 0,
        /// IKE.
        IKE = 1,
        /// AH (RFC 4302).
        AH = 2,
        /// ESP (RFC 4303).
        ESP = 3,
    }
}

registry! {
    /// Transform Type (RFC 7296 §3.3.2).
    TransformType(u8) {
        /// Encryption Algorithm.
        ENCR = 1,
        /// Pseudorandom Function.
        PRF = 2,
        /// Integrity Algorithm.
        INTEG = 3,
        /// Diffie-Hellman group (Key Exchange Method since RFC 9370).
        DH = 4,
        /// Extended Sequence Numbers.
        ESN = 5,
    }
}

registry! {
    /// Notify Message Type (RFC 7296 §3.10.1; RFC 4555, RFC 5685, RFC 7383, RFC 7427).
    /// Values below 16384 are errors, the rest status types.
    NotifyType(u16) {
        /// A critical payload was not understood (§3.10.1).
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        /// A message for an unknown IKE SA (§3.10.1).
        INVALID_IKE_SPI = 4,
        /// The major version is not supported (§3.10.1).
        INVALID_MAJOR_VERSION = 5,
        /// A malformed message (§3.10.1).
        INVALID_SYNTAX = 7,
        /// A message ID outside the window (§3.10.1).
        INVALID_MESSAGE_ID = 9,
        /// An ESP or AH packet for an unknown SPI (§3.10.1).
        INVALID_SPI = 11,
        /// None of the proposals is acceptable (§3.10.1).
        NO_PROPOSAL_CHOSEN = 14,
        /// The KE payload's group is not the one selected (§3.10.1).
        INVALID_KE_PAYLOAD = 17,
        /// Authentication failed (§3.10.1).
        AUTHENTICATION_FAILED = 24,
        /// Only one pair of addresses is acceptable (§3.10.1).
        SINGLE_PAIR_REQUIRED = 34,
        /// No more Child SAs are accepted (§3.10.1).
        NO_ADDITIONAL_SAS = 35,
        /// No internal address can be assigned (§3.10.1).
        INTERNAL_ADDRESS_FAILURE = 36,
        /// A CP payload was required (§3.10.1).
        FAILED_CP_REQUIRED = 37,
        /// The traffic selectors are not acceptable (§3.10.1).
        TS_UNACCEPTABLE = 38,
        /// A packet's selectors do not match its SA (§3.10.1).
        INVALID_SELECTORS = 39,
        /// Try again later (§3.10.1).
        TEMPORARY_FAILURE = 43,
        /// The Child SA to rekey does not exist (§3.10.1).
        CHILD_SA_NOT_FOUND = 44,
        /// No other IKE SAs exist with the sender (§3.10.1).
        INITIAL_CONTACT = 16384,
        /// The window size the sender supports (§3.10.1).
        SET_WINDOW_SIZE = 16385,
        /// Other traffic selectors would also be accepted (§3.10.1).
        ADDITIONAL_TS_POSSIBLE = 16386,
        /// IP compression is supported (§3.10.1).
        IPCOMP_SUPPORTED = 16387,
        /// Hash of the sender's address and port (§2.23).
        NAT_DETECTION_SOURCE_IP = 16388,
        /// Hash of the recipient's address and port (§2.23).
        NAT_DETECTION_DESTINATION_IP = 16389,
        /// A stateless cookie (§2.6).
        COOKIE = 16390,
        /// Transport mode requested (§1.3.1).
        USE_TRANSPORT_MODE = 16391,
        /// Certificates can be looked up by URL (§3.10.1).
        HTTP_CERT_LOOKUP_SUPPORTED = 16392,
        /// The Child SA being rekeyed (§1.3.3).
        REKEY_SA = 16393,
        /// TFC padding is not accepted (§1.3.1).
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394,
        /// Non-first fragments are also sent (§1.3.1).
        NON_FIRST_FRAGMENTS_ALSO = 16395,
        /// MOBIKE is supported (RFC 4555 §3.1).
        MOBIKE_SUPPORTED = 16396,
        /// IKE fragmentation is supported (RFC 7383 §2.3).
        IKEV2_FRAGMENTATION_SUPPORTED = 16430,
        /// The hash algorithms accepted for signatures (RFC 7427 §4).
        SIGNATURE_HASH_ALGORITHMS = 16431,
    }
}

impl NotifyType {
    /// Whether this is an error type (below 16384, RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

registry! {
    /// Transform ID of an encryption algorithm (Transform Type 1, RFC 7296 §3.3.2).
    EncrId(u16) {
        /// AES-CBC (RFC 3602).
        AES_CBC = 12,
        /// AES-GCM with an 8-octet ICV (RFC 4106, RFC 5282).
        AES_GCM_8 = 18,
        /// AES-GCM with a 12-octet ICV (RFC 4106, RFC 5282).
        AES_GCM_12 = 19,
        /// AES-GCM with a 16-octet ICV (RFC 4106, RFC 5282).
        AES_GCM_16 = 20,
        /// ChaCha20-Poly1305 (RFC 7634).
        CHACHA20_POLY1305 = 28,
    }
}

registry! {
    /// Transform ID of a pseudorandom function (Transform Type 2, RFC 7296 §3.3.2).
    PrfId(u16) {
        /// HMAC-SHA1 (RFC 2104).
        HMAC_SHA1 = 2,
        /// HMAC-SHA2-256 (RFC 4868).
        HMAC_SHA2_256 = 5,
        /// HMAC-SHA2-384 (RFC 4868).
        HMAC_SHA2_384 = 6,
        /// HMAC-SHA2-512 (RFC 4868).
        HMAC_SHA2_512 = 7,
    }
}

registry! {
    /// Transform ID of an integrity algorithm (Transform Type 3, RFC 7296 §3.3.2).
    IntegId(u16) {
        /// None (with combined-mode ciphers).
        NONE = 0,
        /// HMAC-SHA1-96 (RFC 2404).
        HMAC_SHA1_96 = 2,
        /// HMAC-SHA2-256-128 (RFC 4868).
        HMAC_SHA2_256_128 = 12,
        /// HMAC-SHA2-384-192 (RFC 4868).
        HMAC_SHA2_384_192 = 13,
        /// HMAC-SHA2-512-256 (RFC 4868).
        HMAC_SHA2_512_256 = 14,
    }
}

registry! {
    /// Diffie-Hellman group (Transform Type 4, RFC 7296 §3.3.2).
    DhGroup(u16) {
        /// None.
        NONE = 0,
        /// 2048-bit MODP group (RFC 3526).
        MODP_2048 = 14,
        /// 3072-bit MODP group (RFC 3526).
        MODP_3072 = 15,
        /// 256-bit random ECP group (RFC 5903).
        ECP_256 = 19,
        /// 384-bit random ECP group (RFC 5903).
        ECP_384 = 20,
        /// 521-bit random ECP group (RFC 5903).
        ECP_521 = 21,
        /// Curve25519 (RFC 8031).
        CURVE25519 = 31,
        /// Curve448 (RFC 8031).
        CURVE448 = 32,
    }
}

registry! {
    /// Extended Sequence Numbers (Transform Type 5, RFC 7296 §3.3.2).
    EsnId(u16) {
        /// No Extended Sequence Numbers.
        NO_ESN = 0,
        /// Extended Sequence Numbers.
        ESN = 1,
    }
}

registry! {
    /// Identification type (RFC 7296 §3.5).
    IdType(u8) {
        /// A single four-octet IPv4 address.
        IPV4_ADDR = 1,
        /// A fully-qualified domain name.
        FQDN = 2,
        /// An RFC 822 email address.
        RFC822_ADDR = 3,
        /// A single sixteen-octet IPv6 address.
        IPV6_ADDR = 5,
        /// A DER-encoded ASN.1 X.500 Distinguished Name.
        DER_ASN1_DN = 9,
        /// A DER-encoded ASN.1 X.509 GeneralName.
        DER_ASN1_GN = 10,
        /// An opaque octet stream.
        KEY_ID = 11,
    }
}

registry! {
    /// Authentication method (RFC 7296 §3.8; RFC 7427).
    AuthMethod(u8) {
        /// RSA digital signature (PKCS #1 v1.5 with SHA-1).
        RSA_SIG = 1,
        /// Shared Key Message Integrity Code (§2.15).
        SHARED_KEY_MIC = 2,
        /// DSS digital signature.
        DSS_SIG = 3,
        /// Digital Signature (RFC 7427 §3).
        DIGITAL_SIGNATURE = 14,
    }
}

registry! {
    /// Traffic selector type (RFC 7296 §3.13.1).
    TsType(u8) {
        /// A range of IPv4 addresses.
        TS_IPV4_ADDR_RANGE = 7,
        /// A range of IPv6 addresses.
        TS_IPV6_ADDR_RANGE = 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_names_and_numbers() {
        assert_eq!(
            format!("{:?}", NotifyType::TS_UNACCEPTABLE),
            "NotifyType(TS_UNACCEPTABLE)"
        );
        assert_eq!(format!("{:?}", NotifyType(12345)), "NotifyType(12345)");
        assert_eq!(format!("{:?}", PayloadType::SKF), "PayloadType(SKF)");
        assert_eq!(format!("{}", ExchangeType::IKE_AUTH), "IKE_AUTH");
        assert_eq!(format!("{}", DhGroup(99)), "99");
    }

    #[test]
    fn values_and_names() {
        let table: &[(Option<&str>, u16)] = &[
            (NotifyType::INVALID_SYNTAX.name(), 7),
            (NotifyType::IKEV2_FRAGMENTATION_SUPPORTED.name(), 16430),
            (EncrId::AES_GCM_16.name(), 20),
            (DhGroup::CURVE25519.name(), 31),
        ];
        let values = [
            NotifyType::INVALID_SYNTAX.0,
            NotifyType::IKEV2_FRAGMENTATION_SUPPORTED.0,
            EncrId::AES_GCM_16.0,
            DhGroup::CURVE25519.0,
        ];
        for ((name, want), got) in table.iter().zip(values) {
            assert!(name.is_some());
            assert_eq!(*want, got);
        }
        assert_eq!(PayloadType(200).name(), None);
        assert_eq!(PayloadType::from(46), PayloadType::SK);
        assert_eq!(u8::from(ExchangeType::INFORMATIONAL), 37);
    }

    #[test]
    fn notify_error_or_status() {
        assert!(NotifyType::CHILD_SA_NOT_FOUND.is_error());
        assert!(NotifyType(16383).is_error());
        assert!(!NotifyType::INITIAL_CONTACT.is_error());
        assert!(!NotifyType::SIGNATURE_HASH_ALGORITHMS.is_error());
    }
}
