//! JWT bearer tokens (RFC 7519) from an identity provider: which key may
//! verify a token, whether its claims admit it, and which tenant and tier
//! they name (`auth.jwt`).
//!
//! Everything but the signature arithmetic is here, so both hosts read
//! tokens the same way: a host passes [`authenticate`] its own signature
//! check (the edge box uses `ring`). A key verifies only the algorithms of
//! its type (an RSA key never checks an HMAC, so a public key cannot be
//! used as a shared secret), `alg: none` is never accepted, and a token
//! must have `exp`.

use serde_json::{Map, Value};

/// The longest token read: far beyond any identity provider's.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A signature algorithm (RFC 7518).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl Alg {
    /// The algorithm of a JOSE `alg` name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            "HS256" => Self::Hs256,
            "HS384" => Self::Hs384,
            "HS512" => Self::Hs512,
            _ => return None,
        })
    }

    /// Whether a key of `material`'s type can verify it.
    fn fits(self, material: &KeyMaterial) -> bool {
        match material {
            KeyMaterial::Rsa { .. } => {
                matches!(self, Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512)
            }
            KeyMaterial::Ec { curve: Curve::P256, .. } => self == Self::Es256,
            KeyMaterial::Ec { curve: Curve::P384, .. } => self == Self::Es384,
            KeyMaterial::Ed25519 { .. } => self == Self::EdDsa,
            KeyMaterial::Hmac { .. } => matches!(self, Self::Hs256 | Self::Hs384 | Self::Hs512),
        }
    }
}

/// An elliptic curve of ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// P-256.
    P256,
    /// P-384.
    P384,
}

/// What a key verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An RSA public key: modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An ECDSA public key as an uncompressed point (`04 || x || y`).
    Ec {
        /// Its curve.
        curve: Curve,
        /// The point.
        point: Vec<u8>,
    },
    /// An Ed25519 public key.
    Ed25519 {
        /// The 32 bytes.
        x: Vec<u8>,
    },
    /// An HMAC secret.
    Hmac {
        /// The secret.
        k: Vec<u8>,
    },
}

/// One key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Its `kid`.
    pub kid: Option<String>,
    /// The one algorithm it is for, when the JWKS says.
    pub alg: Option<Alg>,
    /// The key.
    pub material: KeyMaterial,
}

/// The keys tokens may be signed with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// Reads a JWKS (`{"keys": [...]}`). Keys for encryption (`use: enc`)
    /// and of types no algorithm here uses are left out; a key of a known
    /// type that is malformed is an error, as is a set with no key left.
    pub fn parse(jwks: &Value) -> Result<Self, String> {
        let list = jwks.get("keys").and_then(Value::as_array).ok_or("a JWKS is an object with a `keys` list")?;
        let mut keys = Vec::new();
        for (i, key) in list.iter().enumerate() {
            if key.get("use").and_then(Value::as_str) == Some("enc") {
                continue;
            }
            match Jwk::parse(key) {
                Ok(Some(k)) => keys.push(k),
                Ok(None) => {}
                Err(e) => return Err(format!("keys[{i}]: {e}")),
            }
        }
        if keys.is_empty() {
            return Err("no signing key of a supported type (RSA, EC P-256/P-384, OKP Ed25519, oct)".into());
        }
        Ok(Self { keys })
    }

    /// These keys and `other`'s.
    pub fn merged(mut self, other: Self) -> Self {
        self.keys.extend(other.keys);
        self
    }
}

impl Jwk {
    /// One JWK; `None` for a type no algorithm here uses.
    fn parse(key: &Value) -> Result<Option<Self>, String> {
        let field = |name: &str| -> Result<Vec<u8>, String> {
            let text = key.get(name).and_then(Value::as_str).ok_or_else(|| format!("`{name}` is missing"))?;
            base64url(text).ok_or_else(|| format!("`{name}` is not base64url"))
        };
        let alg = match key.get("alg").and_then(Value::as_str) {
            Some(name) => Some(
                Alg::parse(name).ok_or_else(|| format!("`alg` `{name}` is not a signature algorithm accepted here"))?,
            ),
            None => None,
        };
        let material = match key.get("kty").and_then(Value::as_str) {
            Some("RSA") => KeyMaterial::Rsa { n: field("n")?, e: field("e")? },
            Some("EC") => {
                let (curve, size) = match key.get("crv").and_then(Value::as_str) {
                    Some("P-256") => (Curve::P256, 32),
                    Some("P-384") => (Curve::P384, 48),
                    other => return Err(format!("EC curve {other:?} is not P-256 or P-384")),
                };
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != size || y.len() != size {
                    return Err(format!("`x` and `y` of a {curve:?} key are {size} bytes each"));
                }
                let mut point = vec![4];
                point.extend(x);
                point.extend(y);
                KeyMaterial::Ec { curve, point }
            }
            Some("OKP") => match key.get("crv").and_then(Value::as_str) {
                Some("Ed25519") => {
                    let x = field("x")?;
                    if x.len() != 32 {
                        return Err("`x` of an Ed25519 key is 32 bytes".into());
                    }
                    KeyMaterial::Ed25519 { x }
                }
                _ => return Ok(None),
            },
            Some("oct") => KeyMaterial::Hmac { k: field("k")? },
            Some(_) => return Ok(None),
            None => return Err("`kty` is missing".into()),
        };
        if let Some(a) = alg
            && !a.fits(&material)
        {
            return Err(format!("`alg` {a:?} cannot be used with this key's type"));
        }
        let kid = key.get("kid").and_then(Value::as_str).map(String::from);
        Ok(Some(Self { kid, alg, material }))
    }
}

/// What a token's claims must be, and where its tenant and tier are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// The `iss` required, if any.
    pub issuer: Option<String>,
    /// A value `aud` must hold, if any.
    pub audience: Option<String>,
    /// The claim naming the tenant.
    pub tenant_claim: String,
    /// The claim naming the tier.
    pub tier_claim: String,
    /// Clock difference allowed for `exp` and `nbf`, in milliseconds.
    pub leeway_ms: u64,
    /// The JWKS file the edge box reads (`jwks_file`).
    pub jwks_file: Option<String>,
    /// The keys written in the config (`jwks`).
    pub inline: KeySet,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its tenant.
    pub tenant: String,
    /// Its tier, if it names one.
    pub tier: Option<String>,
}

/// Whether a bearer credential has a JWT's shape: three base64url parts,
/// and a header that is a JSON object naming an `alg`, rather than an API key's.
pub fn looks_like_jwt(bearer: &[u8]) -> bool {
    let shaped = bearer.iter().filter(|&&b| b == b'.').count() == 2
        && bearer.iter().all(|&b| b == b'.' || b == b'-' || b == b'_' || b.is_ascii_alphanumeric());
    shaped
        && std::str::from_utf8(bearer)
            .ok()
            .and_then(|t| json_object(t.split('.').next()?))
            .is_some_and(|header| header.contains_key("alg"))
}

/// Checks `token`: a key of `keys` that fits its algorithm (and `kid`)
/// must verify its signature (`verify(alg, key, signed bytes, signature)`,
/// the host's cryptography), and its claims must pass `rules` at `now_ms`.
/// The error is a message for the client: it says what is wrong with the
/// token, never anything of a key.
pub fn authenticate(
    token: &[u8],
    keys: &KeySet,
    rules: &JwtRules,
    now_ms: u64,
    verify: impl Fn(Alg, &KeyMaterial, &[u8], &[u8]) -> bool,
) -> Result<Identity, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("the bearer token is longer than {MAX_TOKEN_BYTES} bytes"));
    }
    let text = std::str::from_utf8(token).map_err(|_| "the bearer token is not text")?;
    let mut parts = text.split('.');
    let (Some(head), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the bearer token is not a JWT (three base64url parts)".into());
    };
    let header = json_object(head).ok_or("the token's header is not a base64url JSON object")?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
    let alg = Alg::parse(alg_name).ok_or_else(|| format!("the token's algorithm `{alg_name}` is not accepted"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    // The key the token names by `kid`; else (or if no key has that
    // name, as keys written in a config often have none) those without one.
    let fitting = || keys.keys.iter().filter(|k| alg.fits(&k.material) && k.alg.is_none_or(|a| a == alg));
    let mut candidates: Vec<&Jwk> = fitting().filter(|k| kid.is_some_and(|id| k.kid.as_deref() == Some(id))).collect();
    if candidates.is_empty() {
        candidates = fitting().filter(|k| kid.is_none() || k.kid.is_none()).collect();
    }
    if candidates.is_empty() {
        let named = kid.map(|k| format!(" named `{k}`")).unwrap_or_default();
        return Err(format!("no configured key{named} verifies {alg_name} tokens"));
    }
    let signature = base64url(sig).ok_or("the token's signature is not base64url")?;
    let signed = &token[..head.len() + 1 + body.len()];
    if !candidates.iter().any(|k| verify(alg, &k.material, signed, &signature)) {
        return Err("the token's signature does not verify".into());
    }
    let claims = json_object(body).ok_or("the token's claims are not a base64url JSON object")?;
    check_claims(&claims, rules, now_ms)
}

fn check_claims(claims: &Map<String, Value>, rules: &JwtRules, now_ms: u64) -> Result<Identity, String> {
    let now_s = now_ms as f64 / 1000.0;
    let leeway_s = rules.leeway_ms as f64 / 1000.0;
    let exp = claims.get("exp").and_then(Value::as_f64).ok_or("the token has no `exp` (expiry) claim")?;
    if now_s > exp + leeway_s {
        return Err("the token has expired".into());
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64)
        && now_s + leeway_s < nbf
    {
        return Err("the token is not valid yet (`nbf`)".into());
    }
    if let Some(issuer) = &rules.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer)
    {
        return Err("the token's issuer (`iss`) is not the one this endpoint accepts".into());
    }
    if let Some(audience) = &rules.audience {
        let holds = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !holds {
            return Err("the token is not meant for this endpoint (`aud`)".into());
        }
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let tenant = text(&rules.tenant_claim).ok_or_else(|| format!("the token has no `{}` claim", rules.tenant_claim))?;
    Ok(Identity { tenant: tenant.to_string(), tier: text(&rules.tier_claim).map(String::from) })
}

fn json_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&base64url(part)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Decodes unpadded base64url (RFC 4648 §5), as JOSE writes it.
pub fn base64url(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..=produced]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    /// A token whose "signature" is the signed bytes' length: the check the
    /// tests pass stands in for the host's cryptography.
    fn token(header: Value, claims: Value) -> String {
        let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        format!("{signed}.{}", b64(signed.len().to_string().as_bytes()))
    }

    fn by_length(_: Alg, _: &KeyMaterial, signed: &[u8], signature: &[u8]) -> bool {
        signature == signed.len().to_string().as_bytes()
    }

    fn keys() -> KeySet {
        KeySet::parse(&serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "X25519", "x": "AQAB"}
        ]}))
        .unwrap()
    }

    fn rules() -> JwtRules {
        JwtRules {
            issuer: Some("https://idp.example".into()),
            audience: Some("edge".into()),
            tenant_claim: "org".into(),
            tier_claim: "plan".into(),
            leeway_ms: 60_000,
            jwks_file: None,
            inline: KeySet::default(),
        }
    }

    fn claims(exp: u64) -> Value {
        serde_json::json!({"iss": "https://idp.example", "aud": ["x", "edge"], "exp": exp, "org": "acme", "plan": "gold"})
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_valid_token_names_its_tenant_and_tier() {
        let t = token(serde_json::json!({"alg": "RS256", "kid": "r1"}), claims(1_800_000_100));
        let id = authenticate(t.as_bytes(), &keys(), &rules(), NOW, by_length).unwrap();
        assert_eq!(id, Identity { tenant: "acme".into(), tier: Some("gold".into()) });
        assert_eq!(keys().keys.len(), 2, "encryption keys and unknown curves are left out");
    }

    #[test]
    fn claims_that_do_not_admit_are_refused_with_the_reason() {
        let head = serde_json::json!({"alg": "ES256"});
        let check =
            |claims: Value| authenticate(token(head.clone(), claims).as_bytes(), &keys(), &rules(), NOW, by_length);
        assert!(check(claims(1_800_000_000 - 61)).unwrap_err().contains("expired"));
        assert!(check(claims(1_800_000_000 - 59)).is_ok(), "within the leeway");
        let mut c = claims(1_800_000_100);
        c["nbf"] = serde_json::json!(1_800_000_100);
        assert!(check(c).unwrap_err().contains("not valid yet"));
        let mut c = claims(1_800_000_100);
        c["iss"] = serde_json::json!("https://evil.example");
        assert!(check(c).unwrap_err().contains("issuer"));
        let mut c = claims(1_800_000_100);
        c["aud"] = serde_json::json!("other");
        assert!(check(c).unwrap_err().contains("aud"));
        let mut c = claims(1_800_000_100);
        c.as_object_mut().unwrap().remove("org");
        assert!(check(c).unwrap_err().contains("`org`"));
        let mut c = claims(0);
        c.as_object_mut().unwrap().remove("exp");
        assert!(check(c).unwrap_err().contains("exp"));
    }

    #[test]
    fn the_algorithm_must_fit_a_key_and_none_is_never_accepted() {
        let c = claims(1_800_000_100);
        for (alg, why) in [("none", "not accepted"), ("HS256", "no configured key"), ("ES384", "no configured key")] {
            let t = token(serde_json::json!({"alg": alg}), c.clone());
            let err = authenticate(t.as_bytes(), &keys(), &rules(), NOW, by_length).unwrap_err();
            assert!(err.contains(why), "{alg}: {err}");
        }
        // An RSA token whose kid names the EC key finds no key.
        let t = token(serde_json::json!({"alg": "RS256", "kid": "e1"}), c.clone());
        assert!(authenticate(t.as_bytes(), &keys(), &rules(), NOW, by_length).unwrap_err().contains("named `e1`"));
        // A bad signature.
        let t = token(serde_json::json!({"alg": "RS256"}), c) + "AA";
        assert!(authenticate(t.as_bytes(), &keys(), &rules(), NOW, by_length).unwrap_err().contains("signature"));
    }

    #[test]
    fn malformed_sets_and_tokens_are_explained() {
        assert!(KeySet::parse(&serde_json::json!({"keys": []})).is_err());
        assert!(
            KeySet::parse(&serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}]}))
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(KeySet::parse(&serde_json::json!({"keys": [{"kty": "oct", "k": "AQAB", "alg": "RS256"}]})).is_err());
        for bad in ["", "a.b", "a.b.c.d", "!!.x.y"] {
            assert!(authenticate(bad.as_bytes(), &keys(), &rules(), NOW, by_length).is_err(), "{bad}");
        }
        let jwt = token(serde_json::json!({"alg": "RS256"}), claims(1));
        assert!(looks_like_jwt(jwt.as_bytes()));
        for key in ["sk-proj-abc", "a.b c.d", "sk.live.abc", "eyJh.eyJi.c2ln"] {
            assert!(!looks_like_jwt(key.as_bytes()), "{key} is a key");
        }
        assert_eq!(base64url("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64url("A"), None);
    }
}
