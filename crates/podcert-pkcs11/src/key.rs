//! One CA key in a token: opened once, then signing through a pool of logged-in sessions.

use std::sync::{Arc, Condvar, Mutex};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use podcert_core::ca::CaKeyType;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use sha2::Digest;

use crate::pubkey;
use crate::uri::Pkcs11Uri;

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("{0}")]
    Uri(#[from] crate::uri::UriError),
    #[error("PKCS#11 module: {0}")]
    Module(String),
    #[error("reading the PIN from {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Key(String),
    #[error("{uri}: {op}: {source}")]
    Call {
        uri: String,
        op: &'static str,
        #[source]
        source: CkError,
    },
}

/// The user PIN; never shown.
#[derive(Clone)]
pub struct Pin(AuthPin);

impl Pin {
    pub fn new(pin: impl Into<String>) -> Pin {
        Pin(AuthPin::new(pin.into().into()))
    }

    /// Reads the PIN from a file (`pin-source=file:`): its first line, without the line end.
    pub fn from_file(path: &std::path::Path) -> Result<Pin, Pkcs11Error> {
        let fail = |reason: String| Pkcs11Error::Pin {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.len() > 4096 {
            return Err(fail("larger than 4096 bytes; not a PIN file".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let pin = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if pin.is_empty() {
            return Err(fail("the file is empty".into()));
        }
        Ok(Pin::new(pin))
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A private key in a token, signing with C_Sign.
#[derive(Clone)]
pub struct Pkcs11Key {
    inner: Arc<Inner>,
}

struct Inner {
    uri: Pkcs11Uri,
    ctx: Pkcs11,
    pin: Option<Pin>,
    key_type: CaKeyType,
    public: Vec<u8>,
    pool: Mutex<Pool>,
    returned: Condvar,
    /// Why the last operation failed; None once one succeeds again.
    unavailable: Mutex<Option<String>>,
}

struct Pool {
    idle: Vec<(Session, ObjectHandle)>,
    /// Sessions open now, idle or lent out.
    open: usize,
    max: usize,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.inner.uri)
            .field("key_type", &self.inner.key_type)
            .finish_non_exhaustive()
    }
}

/// Errors after which a fresh session may succeed: the session or login is gone, or the token
/// was removed (and perhaps is back).
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::GeneralError
                | RvError::FunctionFailed,
            _
        )
    )
}

impl Pkcs11Key {
    /// Opens the key `uri` names (its PIN from `pin-source`, else `pin`), with up to
    /// `max_sessions` sessions signing at once.
    pub fn open(
        uri: &Pkcs11Uri,
        pin: Option<Pin>,
        max_sessions: usize,
    ) -> Result<Pkcs11Key, Pkcs11Error> {
        let pin = match &uri.pin_source {
            Some(p) => Some(Pin::from_file(p)?),
            None => pin,
        };
        let ctx = crate::module::load(&uri.module_path)?;
        let inner = Inner {
            uri: uri.clone(),
            ctx,
            pin,
            key_type: CaKeyType::EcdsaP256,
            public: Vec::new(),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                max: max_sessions.max(1),
            }),
            returned: Condvar::new(),
            unavailable: Mutex::new(None),
        };
        let (session, handle) = inner.open_session()?;
        let (key_type, public) = inner.public_key(&session, handle)?;
        let inner = Inner {
            key_type,
            public,
            ..inner
        };
        {
            let mut pool = inner.pool.lock().unwrap_or_else(|p| p.into_inner());
            pool.open = 1;
            pool.idle.push((session, handle));
        }
        Ok(Pkcs11Key {
            inner: Arc::new(inner),
        })
    }

    pub fn uri(&self) -> &Pkcs11Uri {
        &self.inner.uri
    }

    pub fn key_type(&self) -> CaKeyType {
        self.inner.key_type
    }

    /// Why the token could not be used the last time, if it could not (readiness).
    pub fn unavailable(&self) -> Option<String> {
        self.inner
            .unavailable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks that the token still answers: signs a probe message (and so reopens lost
    /// sessions). Updates [`Pkcs11Key::unavailable`].
    pub fn probe(&self) -> Result<(), Pkcs11Error> {
        self.inner
            .sign_retrying(b"podcert-signer probe")
            .map(|_| ())
    }

    /// Whether reading CKA_VALUE of the private key fails, as it must for a sensitive key.
    pub fn value_is_readable(&self) -> Result<bool, Pkcs11Error> {
        let (session, handle) = self.inner.open_session()?;
        let r = session.get_attributes(handle, &[AttributeType::Value]);
        Ok(
            matches!(r, Ok(attrs) if attrs.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()))),
        )
    }

    /// The private key's CKA_SENSITIVE and CKA_EXTRACTABLE.
    pub fn sensitive_and_extractable(&self) -> Result<(bool, bool), Pkcs11Error> {
        let (session, handle) = self.inner.open_session()?;
        let attrs = session
            .get_attributes(
                handle,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(|e| self.inner.call("C_GetAttributeValue", e))?;
        let (mut s, mut x) = (false, true);
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => s = v,
                Attribute::Extractable(v) => x = v,
                _ => {}
            }
        }
        Ok((s, x))
    }

    /// Deletes the key pair (private and public objects) from the token.
    pub fn destroy(self) -> Result<(), Pkcs11Error> {
        let inner = &self.inner;
        let session = inner.session()?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let handles = session
                .find_objects(&inner.template(class))
                .map_err(|e| inner.call("C_FindObjects", e))?;
            for h in handles {
                session
                    .destroy_object(h)
                    .map_err(|e| inner.call("C_DestroyObject", e))?;
            }
        }
        Ok(())
    }
}

impl Inner {
    fn call(&self, op: &'static str, source: CkError) -> Pkcs11Error {
        Pkcs11Error::Call {
            uri: self.uri.to_string(),
            op,
            source,
        }
    }

    /// The one slot whose token matches the URI.
    fn slot(&self) -> Result<Slot, Pkcs11Error> {
        let u = &self.uri;
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.call("C_GetSlotList", e))?;
        let mut found = Vec::new();
        for slot in slots {
            if u.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            let ok = |want: &Option<String>, have: &str| {
                want.as_ref().is_none_or(|w| w == have.trim_end())
            };
            if ok(&u.token, info.label())
                && ok(&u.manufacturer, info.manufacturer_id())
                && ok(&u.serial, info.serial_number())
                && ok(&u.model, info.model())
            {
                found.push(slot);
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(Pkcs11Error::Token(format!(
                "{}: no token matches (is it present, and is the token label right?)",
                self.uri
            ))),
            _ => Err(Pkcs11Error::Token(format!(
                "{}: {} tokens match; add serial= or slot-id= to the URI",
                self.uri,
                found.len()
            ))),
        }
    }

    /// A logged-in read-write session.
    fn session(&self) -> Result<Session, Pkcs11Error> {
        let slot = self.slot()?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| self.call("C_OpenSession", e))?;
        if let Some(pin) = &self.pin {
            // Login is per token for the whole application: a second session finds it done.
            match session.login(UserType::User, Some(&pin.0)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(self.call("C_Login", e)),
            }
        }
        Ok(session)
    }

    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class)];
        if let Some(label) = &self.uri.object {
            t.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.uri.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }

    /// A session and the private key's handle in it.
    fn open_session(&self) -> Result<(Session, ObjectHandle), Pkcs11Error> {
        let session = self.session()?;
        let found = session
            .find_objects(&self.template(ObjectClass::PRIVATE_KEY))
            .map_err(|e| self.call("C_FindObjects", e))?;
        match found.as_slice() {
            [one] => Ok((session, *one)),
            [] => Err(Pkcs11Error::Key(format!(
                "{}: no private key with this label/id in the token (generate one with `ca init --generate`)",
                self.uri
            ))),
            _ => Err(Pkcs11Error::Key(format!(
                "{}: {} private keys match; add id= to the URI",
                self.uri,
                found.len()
            ))),
        }
    }

    fn public_key(
        &self,
        session: &Session,
        private: ObjectHandle,
    ) -> Result<(CaKeyType, Vec<u8>), Pkcs11Error> {
        let public = session
            .find_objects(&self.template(ObjectClass::PUBLIC_KEY))
            .map_err(|e| self.call("C_FindObjects", e))?;
        let object = match public.as_slice() {
            [one] => *one,
            // No public object: an RSA private key carries its modulus and exponent.
            _ => private,
        };
        let attrs = session
            .get_attributes(object, &pubkey::PUBLIC_ATTRS)
            .map_err(|e| self.call("C_GetAttributeValue", e))?;
        pubkey::from_attributes(&attrs).map_err(|e| Pkcs11Error::Key(format!("{}: {e}", self.uri)))
    }

    /// Lends an idle session, opens one if fewer than `max` are open, else waits for one.
    fn lease(&self) -> Result<(Session, ObjectHandle), Pkcs11Error> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(s);
            }
            if pool.open < pool.max {
                pool.open += 1;
                drop(pool);
                return self.open_session().inspect_err(|_| self.forget_one());
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, s: (Session, ObjectHandle)) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.idle.push(s);
        self.returned.notify_one();
    }

    /// A lent session was dropped (closed) instead of given back.
    fn forget_one(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.open -= 1;
        self.returned.notify_one();
    }

    /// Drops every idle session: after a token removal they are all dead.
    fn drain(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let n = pool.idle.len();
        pool.idle.clear();
        pool.open -= n;
        self.returned.notify_all();
    }

    fn mechanism_and_data(&self, msg: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
        match self.key_type {
            // Hashed here: many tokens (SoftHSM2 included) offer only raw CKM_ECDSA.
            CaKeyType::EcdsaP256 => (Mechanism::Ecdsa, sha2::Sha256::digest(msg).to_vec()),
            CaKeyType::EcdsaP384 => (Mechanism::Ecdsa, sha2::Sha384::digest(msg).to_vec()),
            CaKeyType::Ed25519 => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                msg.to_vec(),
            ),
            CaKeyType::Rsa3072 => (Mechanism::Sha256RsaPkcs, msg.to_vec()),
        }
    }

    /// The signature in X.509's encoding: PKCS#11 gives ECDSA as r || s, X.509 wants DER.
    fn encode(&self, raw: Vec<u8>) -> Result<Vec<u8>, Pkcs11Error> {
        let bad = |e: String| {
            Pkcs11Error::Key(format!(
                "{}: the token's ECDSA signature is malformed ({e})",
                self.uri
            ))
        };
        match self.key_type {
            CaKeyType::EcdsaP256 => Ok(p256::ecdsa::Signature::from_slice(&raw)
                .map_err(|e| bad(e.to_string()))?
                .to_der()
                .as_bytes()
                .to_vec()),
            CaKeyType::EcdsaP384 => Ok(p384::ecdsa::Signature::from_slice(&raw)
                .map_err(|e| bad(e.to_string()))?
                .to_der()
                .as_bytes()
                .to_vec()),
            _ => Ok(raw),
        }
    }

    fn sign_once(&self, msg: &[u8]) -> Result<Vec<u8>, (Pkcs11Error, bool)> {
        let (mech, data) = self.mechanism_and_data(msg);
        let (session, key) = self.lease().map_err(|e| (e, false))?;
        match session.sign(&mech, key, &data) {
            Ok(sig) => {
                self.give_back((session, key));
                self.encode(sig).map_err(|e| (e, false))
            }
            Err(e) => {
                let lost = session_lost(&e);
                drop(session);
                self.forget_one();
                Err((self.call("C_Sign", e), lost))
            }
        }
    }

    /// Signs; a lost session or removed token is reopened and the signature retried once.
    fn sign_retrying(&self, msg: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let result = match self.sign_once(msg) {
            Err((_, true)) => {
                self.drain();
                self.sign_once(msg).map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        };
        let mut unavailable = self.unavailable.lock().unwrap_or_else(|p| p.into_inner());
        *unavailable = result.as_ref().err().map(|e| e.to_string());
        result
    }
}

impl PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.inner.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.inner.key_type {
            CaKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CaKeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            CaKeyType::Ed25519 => &rcgen::PKCS_ED25519,
            CaKeyType::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error carries no text: the reason is kept for [`Pkcs11Key::unavailable`].
        self.inner
            .sign_retrying(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// Generates a key pair inside the token under the URI's label (and id, if given): the private
/// key with CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE true and CKA_EXTRACTABLE false, so it can
/// only ever sign. Refuses if a private key with that label/id exists.
pub fn generate(
    uri: &Pkcs11Uri,
    pin: Option<Pin>,
    key_type: CaKeyType,
    max_sessions: usize,
) -> Result<Pkcs11Key, Pkcs11Error> {
    let pin = match &uri.pin_source {
        Some(p) => Some(Pin::from_file(p)?),
        None => pin,
    };
    let inner = Inner {
        uri: uri.clone(),
        ctx: crate::module::load(&uri.module_path)?,
        pin: pin.clone(),
        key_type,
        public: Vec::new(),
        pool: Mutex::new(Pool {
            idle: Vec::new(),
            open: 0,
            max: 1,
        }),
        returned: Condvar::new(),
        unavailable: Mutex::new(None),
    };
    let session = inner.session()?;
    let existing = session
        .find_objects(&inner.template(ObjectClass::PRIVATE_KEY))
        .map_err(|e| inner.call("C_FindObjects", e))?;
    if !existing.is_empty() {
        return Err(Pkcs11Error::Key(format!(
            "{uri}: a private key with this label/id exists already; refusing to generate another"
        )));
    }
    let id = match &uri.id {
        Some(id) => id.clone(),
        None => {
            use rand::RngCore;
            let mut id = vec![0u8; 16];
            rand::thread_rng().fill_bytes(&mut id);
            id
        }
    };
    let label = uri.object.clone().unwrap_or_default().into_bytes();
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        // Only signing: tokens default some of these to true.
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    let mechanism = match key_type {
        CaKeyType::Rsa3072 => {
            public.push(Attribute::ModulusBits(3072u64.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
        CaKeyType::Ed25519 => {
            public.push(Attribute::EcParams(
                pubkey::ec_params(key_type).unwrap_or_default().to_vec(),
            ));
            Mechanism::EccEdwardsKeyPairGen
        }
        _ => {
            public.push(Attribute::EcParams(
                pubkey::ec_params(key_type).unwrap_or_default().to_vec(),
            ));
            Mechanism::EccKeyPairGen
        }
    };
    session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| match e {
            CkError::Pkcs11(RvError::MechanismInvalid, _)
            | CkError::Pkcs11(RvError::DomainParamsInvalid, _)
            | CkError::Pkcs11(RvError::CurveNotSupported, _) => Pkcs11Error::Key(format!(
                "{uri}: the token cannot generate {} keys ({e})",
                key_type.name()
            )),
            e => inner.call("C_GenerateKeyPair", e),
        })?;
    drop(session);
    // Opened like any key: the type and public key are read back from the token.
    Pkcs11Key::open(uri, pin, max_sessions)
}
