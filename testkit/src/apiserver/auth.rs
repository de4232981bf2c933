//! Authentication (bearer tokens) and impersonation.

use super::admission::require;
use super::store::State;
use crate::api_status::ApiError;
use crate::rules::{Attributes, UserInfo};
use axum::http::HeaderMap;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;

/// Bearer tokens → identities.
#[derive(Default)]
pub struct Tokens {
    map: Mutex<HashMap<String, UserInfo>>,
}

impl Tokens {
    /// Mints a new random token for `user`.
    pub fn mint(&self, user: &UserInfo) -> String {
        let b: [u8; 24] = rand::thread_rng().gen();
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        self.add(&token, user);
        token
    }

    pub fn add(&self, token: &str, user: &UserInfo) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), user.clone());
    }

    pub fn lookup(&self, token: &str) -> Option<UserInfo> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}

/// The 401 kube-apiserver answers when no authenticator accepts the request.
pub fn unauthorized() -> ApiError {
    ApiError::unauthorized("Unauthorized")
}

/// The identity of a request: its bearer token's user.
pub fn authenticate(tokens: &Tokens, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let h = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .ok_or_else(unauthorized)?;
    tokens.lookup(token.trim()).ok_or_else(unauthorized)
}

/// Applies `Impersonate-User` / `Impersonate-Group` (endpoints/filters/impersonation.go):
/// the requester needs `impersonate` on users (or serviceaccounts) and groups.
pub fn impersonate(st: &State, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let Some(target) = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
    else {
        if headers.contains_key("impersonate-group") {
            return Err(ApiError::internal(
                "requested [Impersonate-Group] without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect();
    let check = |attrs: Attributes| require(st, &user, &attrs);
    let attrs = |resource: &str, namespace: &str, name: &str| Attributes {
        verb: "impersonate".into(),
        api_group: String::new(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: namespace.into(),
        name: name.into(),
        path: None,
    };
    let mut out_groups = groups.clone();
    if let Some(rest) = target.strip_prefix("system:serviceaccount:") {
        let (ns, name) = rest.split_once(':').unwrap_or(("", rest));
        check(attrs("serviceaccounts", ns, name))?;
        if groups.is_empty() {
            out_groups = UserInfo::service_account(ns, name).groups;
        }
    } else {
        check(attrs("users", "", target))?;
    }
    for g in &groups {
        check(attrs("groups", "", g))?;
    }
    if !out_groups.iter().any(|g| g == "system:authenticated") {
        out_groups.push("system:authenticated".into());
    }
    Ok(UserInfo {
        username: target.to_string(),
        uid: String::new(),
        groups: out_groups,
    })
}
