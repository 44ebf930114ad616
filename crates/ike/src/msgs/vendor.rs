//! The Vendor ID payload (RFC 7296 §3.12): an opaque identifier, kept as its octets.

/// Parses the body of a Vendor ID payload: any octets, kept as they are.
pub fn parse(body: &[u8]) -> Vec<u8> {
    body.to_vec()
}

/// Appends the body of a Vendor ID payload.
pub fn emit(vendor_id: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(vendor_id);
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_parse_emit() {
        let id = super::parse(b"espada");
        assert_eq!(id, b"espada");
        let mut out = Vec::new();
        super::emit(&id, &mut out);
        assert_eq!(out, b"espada");
    }
}
