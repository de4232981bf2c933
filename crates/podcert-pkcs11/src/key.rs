//! One CA key in a token: opened once, then signing through a pool of logged-in sessions.

use std::sync::{Arc, Condvar, Mutex};

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

use crate::error::Pkcs11Error;
use crate::module::Module;
use crate::pubkey;
use crate::uri::Pkcs11Uri;

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
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o007 != 0 {
            return Err(fail(
                "others may read it; make it 0600 (or 0440 with the pod's group)".into(),
            ));
        }
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
    module: Arc<Module>,
    pin: Option<Pin>,
    key_type: CaKeyType,
    public: Vec<u8>,
    pool: Mutex<Pool>,
    returned: Condvar,
    /// Why the last operation failed; None once one succeeds again.
    unavailable: Mutex<Option<String>>,
}

/// A session, the private key's handle in it, and the module generation it was opened in.
struct Lent {
    session: Session,
    key: ObjectHandle,
    generation: u64,
}

impl Lent {
    /// Closes the session if the module still knows it; one from before a re-initialisation
    /// is gone already and its handle may belong to a newer session.
    fn discard(self, generation: u64) {
        if self.generation == generation {
            let _ = self.session.close();
        }
    }
}

struct Pool {
    idle: Vec<Lent>,
    /// Sessions open now, idle or lent out.
    open: usize,
    max: usize,
    /// The most sessions ever open at once.
    high_water: usize,
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
fn session_lost(e: &Pkcs11Error) -> bool {
    match e {
        Pkcs11Error::Token(_) => true,
        Pkcs11Error::Call { source, .. } => matches!(
            source,
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
                    | RvError::CryptokiNotInitialized
                    | RvError::GeneralError
                    | RvError::FunctionFailed,
                _
            )
        ),
        _ => false,
    }
}

fn pin_for(uri: &Pkcs11Uri, pin: Option<Pin>) -> Result<Option<Pin>, Pkcs11Error> {
    match &uri.pin_source {
        Some(p) => Ok(Some(Pin::from_file(p)?)),
        None => Ok(pin),
    }
}

impl Pkcs11Key {
    /// Opens the key `uri` names (its PIN from `pin-source`, else `pin`), with up to
    /// `max_sessions` sessions signing at once.
    pub fn open(
        uri: &Pkcs11Uri,
        pin: Option<Pin>,
        max_sessions: usize,
    ) -> Result<Pkcs11Key, Pkcs11Error> {
        let mut inner = Inner::new(uri, pin_for(uri, pin)?, max_sessions)?;
        let lent = {
            let generation = inner.module.enter();
            let lent = inner.open_session(*generation)?;
            let (key_type, public) = inner.public_key(&lent.session, lent.key)?;
            inner.key_type = key_type;
            inner.public = public;
            lent
        };
        // The first session, opened outside the pool: count it, then pool it.
        {
            let mut pool = inner.pool.lock().unwrap_or_else(|p| p.into_inner());
            pool.open = 1;
            pool.high_water = 1;
        }
        inner.give_back(lent);
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

    /// The most sessions this key ever had open at once (never more than its `max_sessions`).
    pub fn sessions_high_water(&self) -> usize {
        self.inner
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .high_water
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
    /// sessions, re-initialising the module if the token is gone from it). Updates
    /// [`Pkcs11Key::unavailable`].
    pub fn probe(&self) -> Result<(), Pkcs11Error> {
        self.inner
            .sign_retrying(b"podcert-signer probe")
            .map(|_| ())
    }

    /// Whether reading CKA_VALUE of the private key yields bytes (it must not: the key is
    /// sensitive).
    pub fn value_is_readable(&self) -> Result<bool, Pkcs11Error> {
        let generation = self.inner.module.enter();
        let lent = self.inner.open_session(*generation)?;
        let r = lent
            .session
            .get_attributes(lent.key, &[AttributeType::Value]);
        lent.discard(*generation);
        Ok(
            matches!(r, Ok(attrs) if attrs.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()))),
        )
    }

    /// The private key's CKA_SENSITIVE and CKA_EXTRACTABLE.
    pub fn sensitive_and_extractable(&self) -> Result<(bool, bool), Pkcs11Error> {
        let generation = self.inner.module.enter();
        let lent = self.inner.open_session(*generation)?;
        let attrs = lent
            .session
            .get_attributes(
                lent.key,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(|e| self.inner.call("C_GetAttributeValue", e));
        lent.discard(*generation);
        let (mut s, mut x) = (false, true);
        for a in attrs? {
            match a {
                Attribute::Sensitive(v) => s = v,
                Attribute::Extractable(v) => x = v,
                _ => {}
            }
        }
        Ok((s, x))
    }

    /// Renames the key pair (CKA_LABEL of its private and public objects); returns the URI
    /// that names it now.
    pub fn relabel(self, label: &str) -> Result<Pkcs11Uri, Pkcs11Error> {
        self.each_object(|inner, session, h| {
            session
                .update_attributes(h, &[Attribute::Label(label.as_bytes().to_vec())])
                .map_err(|e| inner.call("C_SetAttributeValue", e))
        })?;
        Ok(self.inner.uri.with_object(label))
    }

    /// Deletes the key pair (private and public objects) from the token.
    pub fn destroy(self) -> Result<(), Pkcs11Error> {
        self.each_object(|inner, session, h| {
            session
                .destroy_object(h)
                .map_err(|e| inner.call("C_DestroyObject", e))
        })
    }

    /// Runs `op` on the pair's private and public objects in one fresh session, with the
    /// pooled sessions drained first (the objects change under them).
    fn each_object(
        &self,
        mut op: impl FnMut(&Inner, &Session, ObjectHandle) -> Result<(), Pkcs11Error>,
    ) -> Result<(), Pkcs11Error> {
        let inner = &self.inner;
        inner.drain();
        let generation = inner.module.enter();
        let session = inner.session()?;
        let result = (|| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let handles = session
                    .find_objects(&inner.template(class))
                    .map_err(|e| inner.call("C_FindObjects", e))?;
                for h in handles {
                    op(inner, &session, h)?;
                }
            }
            Ok(())
        })();
        let _ = session.close();
        drop(generation);
        result
    }
}

impl Drop for Inner {
    /// Sessions are opened "no drop" (closed only explicitly): close the idle ones.
    fn drop(&mut self) {
        self.drain();
    }
}

impl Inner {
    fn new(uri: &Pkcs11Uri, pin: Option<Pin>, max_sessions: usize) -> Result<Inner, Pkcs11Error> {
        Ok(Inner {
            uri: uri.clone(),
            module: crate::module::load(&uri.module_path)?,
            pin,
            key_type: CaKeyType::EcdsaP256,
            public: Vec::new(),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                max: max_sessions.max(1),
                high_water: 0,
            }),
            returned: Condvar::new(),
            unavailable: Mutex::new(None),
        })
    }

    fn call(&self, op: &'static str, source: CkError) -> Pkcs11Error {
        Pkcs11Error::Call {
            uri: self.uri.to_string(),
            op,
            source,
        }
    }

    /// The one slot whose token matches the URI. Called with the module entered.
    fn slot(&self) -> Result<Slot, Pkcs11Error> {
        let u = &self.uri;
        let ctx = &self.module.ctx;
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| self.call("C_GetSlotList", e))?;
        let mut found = Vec::new();
        for slot in slots {
            if u.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            let Ok(info) = ctx.get_token_info(slot) else {
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

    /// A logged-in read-write session, closed only explicitly ([`Lent::discard`]). Called
    /// with the module entered.
    fn session(&self) -> Result<Session, Pkcs11Error> {
        let slot = self.slot()?;
        let session = self
            .module
            .ctx
            .open_rw_session_no_drop(slot)
            .map_err(|e| self.call("C_OpenSession", e))?;
        if let Some(pin) = &self.pin {
            // Login is per token for the whole application: a second session finds it done.
            match session.login(UserType::User, Some(&pin.0)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => {
                    let _ = session.close();
                    return Err(self.call("C_Login", e));
                }
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

    /// A session and the private key's handle in it. Called with the module entered.
    fn open_session(&self, generation: u64) -> Result<Lent, Pkcs11Error> {
        let session = self.session()?;
        let found = session.find_objects(&self.template(ObjectClass::PRIVATE_KEY));
        let fail = |session: Session, e| {
            let _ = session.close();
            Err(e)
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => return fail(session, self.call("C_FindObjects", e)),
        };
        match found.as_slice() {
            [one] => Ok(Lent {
                key: *one,
                session,
                generation,
            }),
            [] => fail(session, Pkcs11Error::Key(format!(
                "{}: no private key with this label/id in the token (generate one with `ca init --generate`)",
                self.uri
            ))),
            _ => fail(session, Pkcs11Error::Key(format!(
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

    /// Takes an idle session (None: open a new one, counted already), waiting while `max`
    /// are lent out.
    fn lease(&self) -> Option<Lent> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = pool.idle.pop() {
                return Some(s);
            }
            if pool.open < pool.max {
                pool.open += 1;
                pool.high_water = pool.high_water.max(pool.open);
                return None;
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, s: Lent) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.idle.push(s);
        self.returned.notify_one();
    }

    /// A lent (or to-be-opened) session is gone instead of given back.
    fn forget_one(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.open = pool.open.saturating_sub(1);
        self.returned.notify_one();
    }

    /// Discards every idle session: after a lost session the others are likely dead too.
    fn drain(&self) {
        let idle: Vec<Lent> = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            let idle = std::mem::take(&mut pool.idle);
            pool.open = pool.open.saturating_sub(idle.len());
            self.returned.notify_all();
            idle
        };
        let generation = self.module.enter();
        for s in idle {
            s.discard(*generation);
        }
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
            // Never a token key: `generate` refuses them and `pubkey` reads none.
            CaKeyType::MlDsa44 | CaKeyType::MlDsa65 | CaKeyType::MlDsa87 => {
                (Mechanism::Sha256RsaPkcs, msg.to_vec())
            }
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

    /// One signature; on failure, the module generation it failed in.
    fn sign_once(&self, msg: &[u8]) -> Result<Vec<u8>, (Pkcs11Error, u64)> {
        let (mech, data) = self.mechanism_and_data(msg);
        let leased = self.lease();
        let generation = self.module.enter();
        let g = *generation;
        let lent = match leased {
            Some(l) if l.generation == g => l,
            stale => {
                if let Some(l) = stale {
                    l.discard(g);
                }
                match self.open_session(g) {
                    Ok(l) => l,
                    Err(e) => {
                        self.forget_one();
                        return Err((e, g));
                    }
                }
            }
        };
        match lent.session.sign(&mech, lent.key, &data) {
            Ok(sig) => {
                drop(generation);
                self.give_back(lent);
                self.encode(sig).map_err(|e| (e, g))
            }
            Err(e) => {
                lent.discard(g);
                drop(generation);
                self.forget_one();
                Err((self.call("C_Sign", e), g))
            }
        }
    }

    /// Signs. A lost session is reopened and the signature retried; if the token is still
    /// not reachable the module is re-initialised (a removed token may have come back) and
    /// the signature tried once more.
    fn sign_retrying(&self, msg: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let mut result = self.sign_once(msg);
        if let Err((e, _)) = &result {
            if session_lost(e) {
                self.drain();
                result = self.sign_once(msg);
            }
        }
        if let Err((e, generation)) = &result {
            if session_lost(e) {
                match self.module.reinitialize(*generation) {
                    Ok(true) => result = self.sign_once(msg),
                    Ok(false) => {}
                    Err(again) => {
                        result = Err((
                            Pkcs11Error::Token(format!("{e}; re-initialising the module: {again}")),
                            *generation,
                        ))
                    }
                }
            }
        }
        let result = result.map_err(|(e, _)| e);
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
        self.inner.key_type.signature_algorithm()
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
    if key_type.is_ml_dsa() {
        // PKCS#11 3.2 defines CKM_ML_DSA, but no token here (SoftHSM2 included) offers it.
        return Err(Pkcs11Error::Key(format!(
            "{uri}: {} keys cannot be made in a PKCS#11 token (only ECDSA, Ed25519 and RSA)",
            key_type.name()
        )));
    }
    let pin = pin_for(uri, pin)?;
    let inner = Inner::new(uri, pin.clone(), 1)?;
    let generation = inner.module.enter();
    let session = inner.session()?;
    let made = (|| {
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
            })
            .map(|_| ())
    })();
    // Closed on every path: sessions are opened "no drop".
    let _ = session.close();
    drop(generation);
    made?;
    // Opened like any key: the type and public key are read back from the token.
    Pkcs11Key::open(uri, pin, max_sessions)
}
