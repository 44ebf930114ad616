//! Stateless cookies against IKE_SA_INIT floods (RFC 7296 §2.6).
//!
//! Cookie = VersionIDofSecret ‖ SHA-256(Ni ‖ IPi ‖ SPIi ‖ secret). The secret changes every
//! rotation period; a cookie made with the previous secret is still accepted, so an initiator
//! that got a cookie just before a rotation is not refused.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::rng::Random;

const SECRET_LEN: usize = 32;

/// The responder's cookie secrets.
pub struct CookieJar {
    current: (u8, Zeroizing<[u8; SECRET_LEN]>),
    previous: Option<(u8, Zeroizing<[u8; SECRET_LEN]>)>,
    rotated_at: Option<Instant>,
}

impl core::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieJar")
            .field("version", &self.current.0)
            .finish_non_exhaustive()
    }
}

fn fresh(rng: &mut dyn Random) -> Zeroizing<[u8; SECRET_LEN]> {
    let mut s = Zeroizing::new([0u8; SECRET_LEN]);
    rng.fill(&mut s[..]);
    s
}

fn compute(version: u8, secret: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(ni);
    match ip {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(secret);
    let mut out = vec![version];
    out.extend_from_slice(ctx.finish().as_ref());
    out
}

impl CookieJar {
    /// A jar with a first secret drawn from `rng`.
    pub fn new(rng: &mut dyn Random) -> Self {
        CookieJar {
            current: (0, fresh(rng)),
            previous: None,
            rotated_at: None,
        }
    }

    /// Changes the secret when `period` has passed since the last change; after two periods
    /// without a change the previous secret goes too, so no cookie outlives two periods
    /// however rarely this is called.
    pub fn rotate(&mut self, now: Instant, period: Duration, rng: &mut dyn Random) {
        let Some(t) = self.rotated_at else {
            self.rotated_at = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(t);
        if elapsed < period {
            return;
        }
        let next = (self.current.0.wrapping_add(1), fresh(rng));
        let old = core::mem::replace(&mut self.current, next);
        self.previous = (elapsed < period * 2).then_some(old);
        self.rotated_at = Some(now);
    }

    /// The cookie for an initiator.
    pub fn make(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        compute(self.current.0, &self.current.1[..], ni, ip, spi_i)
    }

    /// Whether `cookie` was made by this jar (current or previous secret) for this initiator.
    pub fn check(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&version) = cookie.first() else {
            return false;
        };
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .filter(|(v, _)| *v == version)
            .any(|(v, s)| {
                let want = compute(*v, &s[..], ni, ip, spi_i);
                want.len() == cookie.len() && bool::from(want.ct_eq(cookie))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::TestRandom;

    #[test]
    fn cookie_survives_one_rotation_not_two() {
        let mut rng = TestRandom::new(1);
        let mut jar = CookieJar::new(&mut rng);
        let t0 = Instant::now();
        let p = Duration::from_secs(60);
        jar.rotate(t0, p, &mut rng);
        let ip: IpAddr = "198.51.100.3".parse().unwrap();
        let c = jar.make(b"nonce-nonce-nonce", ip, 77);
        assert!(jar.check(&c, b"nonce-nonce-nonce", ip, 77));
        assert!(!jar.check(&c, b"nonce-nonce-noncf", ip, 77));
        assert!(!jar.check(
            &c,
            b"nonce-nonce-nonce",
            "198.51.100.4".parse().unwrap(),
            77
        ));
        assert!(!jar.check(&c, b"nonce-nonce-nonce", ip, 78));
        jar.rotate(t0 + Duration::from_secs(30), p, &mut rng);
        assert!(
            jar.check(&c, b"nonce-nonce-nonce", ip, 77),
            "no rotation before the period"
        );
        jar.rotate(t0 + p, p, &mut rng);
        assert!(
            jar.check(&c, b"nonce-nonce-nonce", ip, 77),
            "previous secret still valid"
        );
        assert_ne!(jar.make(b"nonce-nonce-nonce", ip, 77), c);
        jar.rotate(t0 + p * 2, p, &mut rng);
        assert!(
            !jar.check(&c, b"nonce-nonce-nonce", ip, 77),
            "two rotations later"
        );
        assert!(!jar.check(&[], b"x", ip, 77));
    }

    #[test]
    fn idle_jar_forgets_a_cookie_after_two_periods() {
        let mut rng = TestRandom::new(2);
        let mut jar = CookieJar::new(&mut rng);
        let t0 = Instant::now();
        let p = Duration::from_secs(10);
        jar.rotate(t0, p, &mut rng);
        let ip: IpAddr = "198.51.100.3".parse().unwrap();
        let c = jar.make(b"nonce-nonce-nonce", ip, 1);
        jar.rotate(t0 + Duration::from_secs(15), p, &mut rng);
        assert!(
            jar.check(&c, b"nonce-nonce-nonce", ip, 1),
            "1.5 periods: previous secret"
        );
        let c = jar.make(b"nonce-nonce-nonce", ip, 1);
        jar.rotate(t0 + Duration::from_secs(40), p, &mut rng);
        assert!(
            !jar.check(&c, b"nonce-nonce-nonce", ip, 1),
            "one call 2.5 periods later"
        );
    }
}
