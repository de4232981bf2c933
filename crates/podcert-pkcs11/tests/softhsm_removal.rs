//! A token removed while its key is open (SoftHSM2: the token directory moved away) fails
//! signatures with a reason, and signing resumes by itself when it is back. A process of its
//! own: the module is re-initialised here, which would disturb other tests' sessions.

use podcert_core::ca::CaKeyType;
use podcert_pkcs11::{generate, softhsm, Pkcs11Uri};
use rcgen::SigningKey;

#[test]
fn a_removed_token_fails_with_a_reason_and_signing_resumes_when_it_returns() {
    let Some(module) = softhsm::module() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm::init_tokens(dir.path(), &["podcert"]).unwrap();
    std::env::set_var("SOFTHSM2_CONF", conf);
    let uri = Pkcs11Uri::parse(&softhsm::uri(&module, dir.path(), "podcert", "ca")).unwrap();
    let key = generate(&uri, None, CaKeyType::EcdsaP256, 2).unwrap();
    key.sign(b"before").unwrap();
    assert_eq!(key.unavailable(), None);

    let tokens = dir.path().join("tokens");
    let away = dir.path().join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    assert!(key.sign(b"while away").is_err());
    let reason = key.unavailable().expect("a reason while the token is away");
    assert!(reason.contains(uri.to_string().as_str()), "{reason}");
    assert!(key.probe().is_err());

    std::fs::rename(&away, &tokens).unwrap();
    key.probe()
        .expect("the token is back: the module is re-initialised and signs again");
    assert_eq!(key.unavailable(), None);
    key.sign(b"after").unwrap();
}
