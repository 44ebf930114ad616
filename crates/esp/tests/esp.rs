//! Behaviour of encapsulation and decapsulation: outer header fields, padding, next header,
//! TFC, ECN, DF, sequence exhaustion, lifetimes, counters, NAT-T and ICMP helpers.

mod common;

use std::net::IpAddr;

use espada_buf::{PacketBuf, VecBuf};
use espada_esp::KeyCache;
use espada_esp::aead::{AeadEngine, GcmAead};
use espada_esp::icmp::{IcmpErrorKind, parse_icmp_error};
use espada_esp::wire::checksum;
use espada_esp::{
    Backend, Class, DfPolicy, DropReason, InboundSa, InnerProto, LifetimeLimits, OutboundSa,
    SaError, classify,
};

const SPI: u32 = 0x0a0b_0c0d;

fn k16() -> Vec<u8> {
    common::key(20)
}

#[test]
fn a_peer_that_moved_behind_its_nat_gets_the_next_packet_at_its_new_address_and_port() {
    for outer_v6 in [false, true] {
        let (mut o, mut i) = common::pair(SPI, outer_v6, true, true, &k16(), Backend::Ring);
        let inner = common::v4_inner(&[7; 20], 0, false);
        let _ = common::encap(&mut o, &inner);
        let moved: IpAddr = if outer_v6 {
            "2001:db8:99::7".parse().unwrap()
        } else {
            "198.51.100.77".parse().unwrap()
        };
        o.set_remote(moved, Some(61_001)).unwrap();
        assert_eq!(o.remote(), (moved, Some(61_001)));
        let pkt = common::encap(&mut o, &inner);
        let ip_len = if outer_v6 { 40 } else { 20 };
        let dst: IpAddr = if outer_v6 {
            <[u8; 16]>::try_from(&pkt[24..40]).unwrap().into()
        } else {
            assert_eq!(checksum::checksum(&pkt[..20]), 0, "IPv4 header checksum");
            <[u8; 4]>::try_from(&pkt[16..20]).unwrap().into()
        };
        assert_eq!(dst, moved);
        let u = &pkt[ip_len..];
        assert_eq!(u16::from_be_bytes([u[0], u[1]]), 4500, "our port stays");
        assert_eq!(u16::from_be_bytes([u[2], u[3]]), 61_001);
        // Same keys and the next sequence number: the peer's inbound SA takes it, on port 4500
        // once its NAT has mapped the packet back (ESP in UDP is received on 4500 only, as
        // `classify` has it; to any other port it is not ESP).
        let mut wrong_port = VecBuf::new(0, &pkt, 0);
        assert_eq!(
            i.decap(&mut KeyCache::new(2), &mut wrong_port).err(),
            Some(DropReason::NotEsp)
        );
        let mut pkt = pkt;
        pkt[ip_len + 2..ip_len + 4].copy_from_slice(&4500u16.to_be_bytes());
        let mut b = VecBuf::new(0, &pkt, 0);
        i.decap(&mut KeyCache::new(2), &mut b).unwrap();
        assert_eq!(o.seq(), 2);
        let other: IpAddr = if outer_v6 {
            "198.51.100.1".parse().unwrap()
        } else {
            "2001:db8::1".parse().unwrap()
        };
        assert!(o.set_remote(other, None).is_err(), "no family change");
    }
}

#[test]
fn four_combinations_and_natt_outer_fields() {
    for outer_v6 in [false, true] {
        for inner_v6 in [false, true] {
            for natt in [false, true] {
                for plen in [0usize, 1, 2, 3, 50] {
                    let (mut o, mut i) =
                        common::pair(SPI, outer_v6, natt, true, &k16(), Backend::Ring);
                    let payload = vec![0x5a; plen];
                    let inner = if inner_v6 {
                        common::v6_inner(&payload, 0xb9)
                    } else {
                        common::v4_inner(&payload, 0xb9, true)
                    };
                    let pkt = common::encap(&mut o, &inner);
                    let ip_len = if outer_v6 { 40 } else { 20 };
                    let esp_off = ip_len + if natt { 8 } else { 0 };
                    if outer_v6 {
                        assert_eq!(pkt[0] >> 4, 6);
                        assert_eq!(
                            u16::from_be_bytes([pkt[4], pkt[5]]) as usize,
                            pkt.len() - 40
                        );
                        assert_eq!(pkt[6], if natt { 17 } else { 50 });
                        assert_eq!(pkt[7], 64);
                        assert_eq!((pkt[0] << 4) | (pkt[1] >> 4), 0xb9, "traffic class copied");
                    } else {
                        assert_eq!(pkt[0], 0x45);
                        assert_eq!(pkt[1], 0xb9, "DSCP and ECN copied");
                        assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]) as usize, pkt.len());
                        assert_eq!(pkt[6] & 0x40, 0x40, "DF copied / set for IPv6 inner");
                        assert_eq!(pkt[8], 64);
                        assert_eq!(pkt[9], if natt { 17 } else { 50 });
                        assert_eq!(checksum::checksum(&pkt[..20]), 0, "IPv4 header checksum");
                    }
                    if natt {
                        let u = &pkt[ip_len..];
                        assert_eq!(u16::from_be_bytes([u[0], u[1]]), 4500);
                        assert_eq!(u16::from_be_bytes([u[2], u[3]]), 4500);
                        assert_eq!(
                            u16::from_be_bytes([u[4], u[5]]) as usize,
                            pkt.len() - ip_len
                        );
                        if !outer_v6 {
                            assert_eq!(&u[6..8], &[0, 0], "UDP checksum 0 over IPv4");
                        }
                    }
                    // ESP payload (IV + ciphertext + trailer) 4-byte aligned (RFC 4303 §2.4).
                    assert_eq!((pkt.len() - esp_off - 8 - 16) % 4, 0);
                    assert_eq!(
                        pkt.len(),
                        esp_off + 16 + inner.len() + (4 - (inner.len() + 2) % 4) % 4 + 2 + 16
                    );
                    assert_eq!(
                        classify(&pkt),
                        Ok(Class::Esp {
                            spi: SPI,
                            seq: 1,
                            esp_offset: esp_off,
                            end: pkt.len(),
                            tos: if outer_v6 {
                                (pkt[0] << 4) | (pkt[1] >> 4)
                            } else {
                                pkt[1]
                            },
                            udp_encap: natt
                        })
                    );
                    let mut b = VecBuf::new(0, &pkt, 0);
                    let p = i.decap(&mut KeyCache::new(2), &mut b).unwrap();
                    assert_eq!(b.data(), &inner[..]);
                    assert_eq!(
                        p.inner,
                        if inner_v6 {
                            InnerProto::V6
                        } else {
                            InnerProto::V4
                        }
                    );
                }
            }
        }
    }
}

#[test]
fn df_policy() {
    for (policy, inner_df, want) in [
        (DfPolicy::Copy, false, 0),
        (DfPolicy::Copy, true, 0x40),
        (DfPolicy::Set, false, 0x40),
        (DfPolicy::Clear, true, 0),
    ] {
        let (mut o, _) = common::configs(SPI, false, false, false);
        o.df = policy;
        o.ttl = 17;
        let mut sa = OutboundSa::new(o, &k16(), Backend::Ring).unwrap();
        let pkt = common::encap(&mut sa, &common::v4_inner(b"x", 0, inner_df));
        assert_eq!(pkt[6] & 0x40, want, "{policy:?} inner_df={inner_df}");
        assert_eq!(pkt[8], 17);
        assert_eq!(checksum::checksum(&pkt[..20]), 0);
    }
}

/// Sets the outer ECN of an encapsulated packet (fixing the IPv4 checksum).
fn set_outer_ecn(pkt: &mut [u8], ecn: u8) {
    if pkt[0] >> 4 == 4 {
        pkt[1] = (pkt[1] & !3) | ecn;
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&pkt[..20]);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        pkt[1] = (pkt[1] & !0x30) | (ecn << 4);
    }
}

#[test]
fn ecn_rfc6040_decap() {
    for outer_v6 in [false, true] {
        for inner_v6 in [false, true] {
            let (mut o, mut i) = common::pair(SPI, outer_v6, false, false, &k16(), Backend::Ring);
            let mk = |tos| {
                if inner_v6 {
                    common::v6_inner(b"ecn", tos)
                } else {
                    common::v4_inner(b"ecn", tos, true)
                }
            };
            // Inner ECT(0), outer CE: the inner becomes CE.
            let mut pkt = common::encap(&mut o, &mk(0xb8 | 2));
            set_outer_ecn(&mut pkt, 3);
            let mut b = VecBuf::new(0, &pkt, 0);
            i.decap(&mut KeyCache::new(2), &mut b).unwrap();
            let d = b.data();
            if inner_v6 {
                assert_eq!((d[0] << 4) | (d[1] >> 4), 0xbb);
            } else {
                assert_eq!(d[1], 0xbb);
                assert_eq!(checksum::checksum(&d[..20]), 0, "inner checksum updated");
            }
            // Inner Not-ECT, outer CE: drop (RFC 6040 §4.2).
            let mut pkt = common::encap(&mut o, &mk(0xb8));
            set_outer_ecn(&mut pkt, 3);
            let mut b = VecBuf::new(0, &pkt, 0);
            assert_eq!(
                i.decap(&mut KeyCache::new(2), &mut b),
                Err(DropReason::EcnCeOnNotEct)
            );
            assert_eq!(i.counters().snapshot().drop(DropReason::EcnCeOnNotEct), 1);
        }
    }
}

/// Builds an IPv4 ESP packet around an arbitrary plaintext (inner + trailer), for malformed
/// trailer tests.
fn craft(key: &[u8], seq: u32, plaintext: &[u8]) -> Vec<u8> {
    let e = AeadEngine::new(Backend::RustCrypto, &key[..16]).unwrap();
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&key[16..20]);
    nonce[4..].copy_from_slice(&u64::from(seq).to_be_bytes());
    let mut aad = [0u8; 8];
    aad[..4].copy_from_slice(&SPI.to_be_bytes());
    aad[4..].copy_from_slice(&seq.to_be_bytes());
    let mut body = plaintext.to_vec();
    let tag = e.seal(&nonce, &aad, &mut body).unwrap();
    let total = 20 + 16 + body.len() + 16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, 50, 0, 0, 198, 51, 100, 2, 192, 0, 2, 1]);
    let c = checksum::checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&aad);
    p.extend_from_slice(&nonce[4..]);
    p.extend_from_slice(&body);
    p.extend_from_slice(&tag);
    p
}

fn inbound_plain() -> InboundSa {
    let (_, i) = common::configs(SPI, false, false, false);
    InboundSa::new(i, &k16(), Backend::Ring).unwrap()
}

#[test]
fn trailer_checks_and_tfc() {
    let inner = common::v4_inner(b"hello", 0, false); // 33 bytes
    let with = |tfc: &[u8], pad: &[u8], nh: u8| {
        let mut v = inner.clone();
        v.extend_from_slice(tfc);
        v.extend_from_slice(pad);
        v.push(pad.len() as u8);
        v.push(nh);
        v
    };
    let mut sa = inbound_plain();
    let cases: Vec<(Vec<u8>, Result<(), DropReason>)> = vec![
        (with(&[], &[1], 4), Ok(())),
        (with(&[0; 13], &[1, 2], 4), Ok(())), // TFC padding tolerated
        (with(&[], &[1, 3], 4), Err(DropReason::BadPadding)), // not monotonic
        (with(&[], &[1], 41), Err(DropReason::BadInnerHeader)), // IPv4 packet, next header IPv6
        (with(&[], &[1], 6), Err(DropReason::BadNextHeader)),
        (with(&[], &[1], 59), Err(DropReason::DummyPacket)),
        (vec![0xff, 4], Err(DropReason::BadPadding)), // pad length beyond payload
        (with(&[], &(1..=200).collect::<Vec<u8>>(), 4), Ok(())), // long padding is legal
    ];
    for (n, (pt, want)) in cases.into_iter().enumerate() {
        let seq = n as u32 + 1;
        let mut b = VecBuf::new(0, &craft(&k16(), seq, &pt), 0);
        let got = sa.decap(&mut KeyCache::new(2), &mut b).map(|_| ());
        assert_eq!(got, want, "case {n}");
        if want.is_ok() {
            assert_eq!(b.data(), &inner[..], "case {n}");
        }
        // Authenticated packets advance the window whatever happens next.
        assert_eq!(sa.replay().highest(), u64::from(seq));
    }
    let s = sa.counters().snapshot();
    assert_eq!(s.packets, 3);
    assert_eq!(s.drop(DropReason::BadPadding), 2);
    assert_eq!(s.drop(DropReason::BadNextHeader), 1);
    assert_eq!(s.drop(DropReason::DummyPacket), 1);
    assert_eq!(s.drop(DropReason::BadInnerHeader), 1);
}

#[test]
fn auth_failure_changes_nothing_but_its_counter() {
    let (mut o, mut i) = common::pair(SPI, false, false, true, &k16(), Backend::Ring);
    let good = common::encap(&mut o, &common::inner(false, b"abc"));
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x80;
    let before = (i.replay().state(), i.counters().snapshot());
    let mut b = VecBuf::new(0, &bad, 0);
    assert_eq!(
        i.decap(&mut KeyCache::new(2), &mut b),
        Err(DropReason::AuthFailed)
    );
    let after = (i.replay().state(), i.counters().snapshot());
    assert_eq!(before.0, after.0);
    assert_eq!(after.1.drop(DropReason::AuthFailed), 1);
    assert_eq!(after.1.total_drops(), 1);
    assert_eq!(after.1.packets, 0);
    let mut b = VecBuf::new(0, &good, 0);
    i.decap(&mut KeyCache::new(2), &mut b).unwrap();
}

#[test]
fn sequence_exhaustion_stops_the_sa() {
    for (esn, start) in [(false, u64::from(u32::MAX) - 1), (true, u64::MAX - 1)] {
        let (mut o, _) = common::configs(SPI, false, false, esn);
        o.initial_seq = start;
        let mut sa = OutboundSa::new(o, &k16(), Backend::Ring).unwrap();
        let inner = common::inner(false, b"x");
        common::encap(&mut sa, &inner);
        assert_eq!(sa.seq(), start + 1);
        for _ in 0..3 {
            let mut b = common::encap_buf(&inner);
            assert_eq!(
                sa.encap(&mut KeyCache::new(2), &mut b),
                Err(DropReason::SeqExhausted)
            );
            assert_eq!(b.data(), &inner[..], "buffer untouched");
        }
        assert_eq!(sa.seq(), start + 1, "never wraps");
        assert_eq!(sa.counters().snapshot().drop(DropReason::SeqExhausted), 3);
    }
    let (mut o, _) = common::configs(SPI, false, false, false);
    o.initial_seq = 1 << 32;
    assert_eq!(
        OutboundSa::new(o, &k16(), Backend::Ring).err(),
        Some(SaError::BadSequenceState(1 << 32))
    );
}

#[test]
fn lifetimes_soft_once_then_hard() {
    let (mut oc, mut ic) = common::configs(SPI, false, false, true);
    let lim = LifetimeLimits {
        soft_packets: 3,
        hard_packets: 5,
        ..LifetimeLimits::UNLIMITED
    };
    oc.lifetime = lim;
    ic.lifetime = LifetimeLimits {
        soft_bytes: 100,
        hard_bytes: 150,
        ..LifetimeLimits::UNLIMITED
    };
    let mut o = OutboundSa::new(oc, &k16(), Backend::Ring).unwrap();
    let mut i = InboundSa::new(ic, &k16(), Backend::RustCrypto).unwrap();
    let inner = common::inner(false, &[7; 12]); // 40 bytes
    let mut soft_out = 0;
    let mut soft_in = 0;
    let mut delivered = 0;
    for _ in 0..8 {
        let mut b = common::encap_buf(&inner);
        match o.encap(&mut KeyCache::new(2), &mut b) {
            Ok(p) => {
                soft_out += u32::from(p.soft_expired);
                match i.decap(&mut KeyCache::new(2), &mut b) {
                    Ok(p) => {
                        delivered += 1;
                        soft_in += u32::from(p.soft_expired);
                    }
                    Err(e) => assert_eq!(e, DropReason::LifetimeExpired),
                }
            }
            Err(e) => assert_eq!(e, DropReason::LifetimeExpired),
        }
    }
    assert_eq!((soft_out, soft_in), (1, 1));
    assert_eq!(o.counters().snapshot().packets, 5);
    assert_eq!(o.counters().snapshot().drop(DropReason::LifetimeExpired), 3);
    assert_eq!(o.counters().snapshot().soft_expired_events, 1);
    assert_eq!(
        delivered, 4,
        "40-byte packets: the 4th reaches 160 >= 150 bytes"
    );
    assert_eq!(i.counters().snapshot().drop(DropReason::LifetimeExpired), 1);
}

#[test]
fn natt_non_esp_payloads_are_not_esp() {
    let (mut o, mut i) = common::pair(SPI, false, true, false, &k16(), Backend::Ring);
    let pkt = common::encap(&mut o, &common::inner(false, b"x"));
    for payload in [&[0xffu8][..], &[0, 0, 0, 0, 1, 2, 3, 4]] {
        let mut p = pkt[..28].to_vec();
        p.extend_from_slice(payload);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[24..26].copy_from_slice(&(total - 20).to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let want = if payload.len() == 1 {
            Class::NatKeepalive
        } else {
            Class::IkeNonEsp { ike_offset: 32 }
        };
        assert_eq!(classify(&p), Ok(want));
        let mut b = VecBuf::new(0, &p, 0);
        assert_eq!(
            i.decap(&mut KeyCache::new(2), &mut b),
            Err(DropReason::NotEsp)
        );
    }
}

#[test]
fn room_and_malformed_input() {
    let (mut o, mut i) = common::pair(SPI, true, true, true, &k16(), Backend::Ring);
    let inner = common::inner(true, b"room");
    let tail = (4 - (inner.len() + 2) % 4) % 4 + 2 + 16;
    let mut b = VecBuf::new(63, &inner, tail);
    assert_eq!(
        o.encap(&mut KeyCache::new(2), &mut b),
        Err(DropReason::NoHeadroom)
    );
    let mut b = VecBuf::new(64, &inner, tail - 1);
    assert_eq!(
        o.encap(&mut KeyCache::new(2), &mut b),
        Err(DropReason::NoTailroom)
    );
    assert_eq!(b.data(), &inner[..]);
    assert_eq!(o.seq(), 0, "failed encap uses no sequence number");
    let mut b = VecBuf::new(64, &inner, tail);
    o.encap(&mut KeyCache::new(2), &mut b).unwrap();
    let pkt = b.data().to_vec();
    // Every truncation is refused without panic and without state change.
    for n in 0..pkt.len() {
        let mut b = VecBuf::new(0, &pkt[..n], 0);
        assert!(i.decap(&mut KeyCache::new(2), &mut b).is_err());
    }
    assert_eq!(i.replay().highest(), 0);
    // Garbage inner packets.
    for bad in [
        &[][..],
        &[0x45, 0, 0][..],
        &[0x75; 40][..],
        &[
            0x45, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ][..],
    ] {
        let mut b = common::encap_buf(bad);
        assert!(o.encap(&mut KeyCache::new(2), &mut b).is_err());
    }
    // Trailing bytes after the inner packet (e.g. Ethernet padding) are not encrypted.
    let mut padded = inner.clone();
    padded.extend_from_slice(&[0xee; 6]);
    let pkt = common::encap(&mut o, &padded);
    let mut b = VecBuf::new(0, &pkt, 0);
    i.decap(&mut KeyCache::new(2), &mut b).unwrap();
    assert_eq!(b.data(), &inner[..]);
    // SPI mismatch.
    let (_, mut other) = common::pair(SPI + 1, true, true, true, &k16(), Backend::Ring);
    let pkt = common::encap(&mut o, &inner);
    assert_eq!(
        other.decap(&mut KeyCache::new(2), &mut VecBuf::new(0, &pkt, 0)),
        Err(DropReason::SpiMismatch)
    );
}

#[test]
fn install_errors() {
    let (o, i) = common::configs(SPI, false, false, true);
    assert_eq!(
        OutboundSa::new(o.clone(), &[0; 16], Backend::Ring).err(),
        Some(SaError::BadKeyLength(16))
    );
    assert!(matches!(
        OutboundSa::new(i.clone(), &k16(), Backend::Ring),
        Err(SaError::WrongDirection(_))
    ));
    let mut bad = o.clone();
    bad.spi = 255;
    assert_eq!(
        OutboundSa::new(bad, &k16(), Backend::Ring).err(),
        Some(SaError::ReservedSpi(255))
    );
    let mut bad = o.clone();
    bad.remote = common::V6_REMOTE.parse().unwrap();
    assert!(matches!(
        OutboundSa::new(bad, &k16(), Backend::Ring),
        Err(SaError::AddressFamilyMismatch(..))
    ));
    let mut bad = i.clone();
    bad.replay_window = 31;
    assert_eq!(
        InboundSa::new(bad, &k16(), Backend::Ring).err(),
        Some(SaError::BadReplayWindow(31))
    );
    let mut big = i.clone();
    big.replay_window = 4096;
    assert!(InboundSa::new(big, &common::key(36), Backend::RustCrypto).is_ok());
    let s = format!("{:?}", OutboundSa::new(o, &k16(), Backend::Ring).unwrap());
    assert!(s.contains("key redacted"));
}

#[test]
fn icmp_error_quoting_our_packet() {
    let (mut o, _) = common::pair(SPI, false, false, false, &k16(), Backend::Ring);
    let pkt = common::encap(&mut o, &common::inner(false, &[1; 1400]));
    let mut icmp = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 203, 0, 113, 9, 192, 0, 2, 1,
    ];
    icmp.extend_from_slice(&[3, 4, 0, 0, 0, 0, 0x05, 0xa0]);
    icmp.extend_from_slice(&pkt[..28]);
    let len = icmp.len() as u16;
    icmp[2..4].copy_from_slice(&len.to_be_bytes());
    let e = parse_icmp_error(&icmp).unwrap();
    assert_eq!(e.kind, IcmpErrorKind::FragmentationNeeded { mtu: 1440 });
    assert_eq!(e.spi, Some(SPI));
    assert_eq!(e.src, common::V4_LOCAL.parse::<std::net::IpAddr>().unwrap());
}

#[test]
fn counters_show_the_last_sequence_sent_and_the_highest_received() {
    use espada_buf::VecBuf;
    use espada_esp::{Backend, Direction, InboundSa, OutboundSa, SaConfig};
    let (l, r) = (
        "198.51.100.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    );
    let mut oc = SaConfig::new(0x4242, Direction::Outbound, l, r);
    oc.initial_seq = 41;
    let mut out = OutboundSa::new(oc, &[1; 20], Backend::Ring).unwrap();
    let mut inb = InboundSa::new(
        SaConfig::new(0x4242, Direction::Inbound, r, l),
        &[1; 20],
        Backend::Ring,
    )
    .unwrap();
    assert_eq!(
        out.counters().snapshot().seq,
        41,
        "installed starting point"
    );
    let mut pkts = Vec::new();
    for _ in 0..3 {
        let mut inner = vec![0u8; 40];
        inner[0] = 0x45;
        inner[2..4].copy_from_slice(&40u16.to_be_bytes());
        inner[8] = 64;
        let mut b = VecBuf::new(80, &inner, 40);
        out.encap(&mut KeyCache::new(2), &mut b).unwrap();
        pkts.push(b);
    }
    assert_eq!(out.counters().snapshot().seq, 44);
    inb.decap(&mut KeyCache::new(2), &mut pkts[2]).unwrap();
    inb.decap(&mut KeyCache::new(2), &mut pkts[0]).unwrap();
    assert_eq!(
        inb.counters().snapshot().seq,
        44,
        "highest accepted, not the last one"
    );
}

#[test]
fn max_inner_is_the_largest_packet_whose_esp_fits_the_mtu() {
    for outer_v6 in [false, true] {
        for natt in [false, true] {
            let (mut o, _) =
                common::pair(0x999, outer_v6, natt, true, &common::key(20), Backend::Ring);
            for mtu in [576u32, 1280, 1400, 1500, 9000] {
                let n = o.max_inner(mtu);
                for (len, fits) in [(n, true), (n + 1, false)] {
                    // IPv4 + UDP headers (28) + payload.
                    let inner = common::inner(false, &vec![0x42; len - 28]);
                    assert_eq!(inner.len(), len);
                    let outer = common::encap(&mut o, &inner);
                    assert_eq!(
                        outer.len() <= mtu as usize,
                        fits,
                        "v6 {outer_v6} natt {natt} mtu {mtu}: {len} inner -> {} outer",
                        outer.len()
                    );
                }
            }
        }
    }
}

#[test]
fn esp_behind_ipv6_extension_headers_decrypts_and_an_ipv6_fragment_is_an_outer_fragment() {
    for natt in [false, true] {
        let (mut o, mut i) = common::pair(0x777, true, natt, true, &common::key(20), Backend::Ring);
        let inner = common::inner(false, b"behind a destination options header");
        let outer = common::encap(&mut o, &inner);
        // Insert a destination options header (next header = what the IPv6 header said).
        let mut p = outer[..40].to_vec();
        p.extend_from_slice(&[outer[6], 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&outer[40..]);
        p[6] = 60;
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        let mut b = VecBuf::new(0, &p, 0);
        i.decap(&mut KeyCache::new(2), &mut b)
            .unwrap_or_else(|e| panic!("natt {natt}: {e}"));
        assert_eq!(b.data(), &inner[..]);
        // The same packet with a fragment header instead is an outer fragment.
        let mut f = p.clone();
        f[6] = 44;
        let mut b = VecBuf::new(0, &f, 0);
        assert_eq!(
            i.decap(&mut KeyCache::new(2), &mut b),
            Err(DropReason::OuterFragment)
        );
    }
}
