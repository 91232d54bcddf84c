//! The keys JWT bearer tokens are checked with (`auth.jwt`), and the
//! signature arithmetic, by `ring`; what a token must be is
//! `edge_router::jwt`'s.

use edge_router::RouterConfig;
use edge_router::jwt::{Alg, Curve, KeyMaterial, KeySet};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// The keys of a config: those written in it and those of its `jwks_file`,
/// read now. `None` when it takes no tokens.
pub fn load(config: &RouterConfig) -> anyhow::Result<Option<KeySet>> {
    let Some(rules) = &config.auth.jwt else { return Ok(None) };
    let mut keys = rules.inline.clone();
    if let Some(path) = &rules.jwks_file {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?;
        let jwks: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path} is not JSON: {e}"))?;
        keys = keys.merged(KeySet::parse(&jwks).map_err(|e| anyhow::anyhow!("{path}: {e}"))?);
    }
    Ok(Some(keys))
}

/// Whether `signature` over `signed` verifies with `key` under `alg`.
pub fn verify(alg: Alg, key: &KeyMaterial, signed: &[u8], signature: &[u8]) -> bool {
    match key {
        KeyMaterial::Rsa { n, e } => {
            let params: &signature::RsaParameters = match alg {
                Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            RsaPublicKeyComponents { n, e }.verify(params, signed, signature).is_ok()
        }
        KeyMaterial::Ec { curve, point } => {
            let params = match (alg, curve) {
                (Alg::Es256, Curve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                (Alg::Es384, Curve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                _ => return false,
            };
            UnparsedPublicKey::new(params, point).verify(signed, signature).is_ok()
        }
        KeyMaterial::Ed25519 { x } => {
            alg == Alg::EdDsa && UnparsedPublicKey::new(&signature::ED25519, x).verify(signed, signature).is_ok()
        }
        KeyMaterial::Hmac { k } => {
            let algorithm = match alg {
                Alg::Hs256 => ring::hmac::HMAC_SHA256,
                Alg::Hs384 => ring::hmac::HMAC_SHA384,
                Alg::Hs512 => ring::hmac::HMAC_SHA512,
                _ => return false,
            };
            ring::hmac::verify(&ring::hmac::Key::new(algorithm, k), signed, signature).is_ok()
        }
    }
}
