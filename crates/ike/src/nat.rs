//! NAT detection (RFC 7296 §2.23): each side hashes the addresses it sees, the other side
//! compares them with the addresses it uses.

use std::net::{IpAddr, SocketAddr};

use ring::digest;

/// SHA-1(SPIi | SPIr | IP | Port), the data of NAT_DETECTION_SOURCE_IP and
/// NAT_DETECTION_DESTINATION_IP (§3.10.1; SPIr is zero in the IKE_SA_INIT request).
pub fn detection_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// What the NAT_DETECTION payloads of one message say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatResult {
    /// Both NAT_DETECTION payloads were present (the peer supports NAT traversal).
    pub supported: bool,
    /// The peer's address is translated (no SOURCE_IP hash matches where it came from).
    pub remote_behind_nat: bool,
    /// Our address is translated (the DESTINATION_IP hash does not match our address).
    pub local_behind_nat: bool,
}

/// Evaluates the hashes of a received message that came from `remote` to `local`.
pub fn evaluate(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    source_hashes: &[&[u8]],
    destination_hash: Option<&[u8]>,
) -> NatResult {
    let Some(dst) = destination_hash.filter(|_| !source_hashes.is_empty()) else {
        return NatResult::default();
    };
    let expect_src = detection_hash(spi_i, spi_r, remote);
    NatResult {
        supported: true,
        remote_behind_nat: !source_hashes.contains(&expect_src.as_slice()),
        local_behind_nat: dst != detection_hash(spi_i, spi_r, local).as_slice(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha1_of_the_fields() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let mut input = Vec::new();
        input.extend_from_slice(&1u64.to_be_bytes());
        input.extend_from_slice(&0u64.to_be_bytes());
        input.extend_from_slice(&[192, 0, 2, 1, 0x01, 0xf4]);
        let expected = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
        assert_eq!(detection_hash(1, 0, a), expected.as_ref());
        assert_eq!(detection_hash(1, 0, a).len(), 20);
    }

    #[test]
    fn evaluation_cases() {
        let (l, r): (SocketAddr, SocketAddr) = (
            "192.0.2.1:500".parse().unwrap(),
            "198.51.100.7:500".parse().unwrap(),
        );
        let nat_r: SocketAddr = "203.0.113.9:4711".parse().unwrap();
        let src = detection_hash(5, 6, r);
        let dst = detection_hash(5, 6, l);
        let other = detection_hash(5, 6, nat_r);
        // (sources, destination, remote seen, expected)
        type Case<'a> = (&'a [&'a [u8]], Option<&'a [u8]>, SocketAddr, NatResult);
        let cases: &[Case<'_>] = &[
            (
                &[&src],
                Some(&dst),
                r,
                NatResult {
                    supported: true,
                    ..Default::default()
                },
            ),
            (
                &[&src],
                Some(&dst),
                nat_r,
                NatResult {
                    supported: true,
                    remote_behind_nat: true,
                    local_behind_nat: false,
                },
            ),
            (
                &[&other, &src],
                Some(&other),
                r,
                NatResult {
                    supported: true,
                    remote_behind_nat: false,
                    local_behind_nat: true,
                },
            ),
            (&[], Some(&dst), r, NatResult::default()),
            (&[&src], None, r, NatResult::default()),
        ];
        for (s, d, seen, want) in cases {
            assert_eq!(evaluate(5, 6, l, *seen, s, *d), *want);
        }
    }
}
