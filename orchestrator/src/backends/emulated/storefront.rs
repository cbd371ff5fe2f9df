//! Online Boutique's frontend behaviour that the app model leaves out: the `shop_session-id` cookie set on any
//! response to a request without one, the `shop_currency` cookie POST /setCurrency sets, and a cart per session
//! that POST /cart fills, GET /cart lists and POST /cart/checkout empties.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

pub const SESSION_COOKIE: &str = "shop_session-id";
pub const CURRENCY_COOKIE: &str = "shop_currency";
/// The frontend's cookie lifetime (48 h).
const COOKIE_MAX_AGE_S: u32 = 172_800;
/// Carts kept at most; beyond, the oldest sessions' carts are forgotten (a bounded Redis, as the demo's).
const MAX_CARTS: usize = 200_000;

/// What a route does beyond its call tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Page,
    SetCurrency,
    AddToCart,
    ViewCart,
    Checkout,
}

pub struct Storefront {
    carts: Mutex<HashMap<String, u32>>,
    sessions: AtomicU64,
    salt: u64,
}

impl Storefront {
    /// The storefront of `app`, if it is Online Boutique.
    pub fn for_app(app: &str, seed: u64) -> Option<Storefront> {
        (app == "online-boutique").then(|| Storefront {
            carts: Mutex::new(HashMap::new()),
            sessions: AtomicU64::new(0),
            salt: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        })
    }

    /// The action of route `name` of the Online Boutique model.
    pub fn action(name: &str) -> Action {
        match name {
            "set-currency" => Action::SetCurrency,
            "add-to-cart" => Action::AddToCart,
            "cart" => Action::ViewCart,
            "checkout" => Action::Checkout,
            _ => Action::Page,
        }
    }

    /// The request's session, or a new one and the Set-Cookie header that creates it.
    pub fn session(&self, headers: &HeaderMap) -> (String, Option<String>) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            return (id.to_string(), None);
        }
        let n = self.sessions.fetch_add(1, Ordering::Relaxed).wrapping_mul(self.salt);
        let id = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (n >> 32) as u32,
            (n >> 16) as u16,
            (n >> 4) & 0xfff,
            n & 0xfff,
            n & 0xffff_ffff_ffff
        );
        let set_cookie = format!("{SESSION_COOKIE}={id}; Path=/; Max-Age={COOKIE_MAX_AGE_S}");
        (id, Some(set_cookie))
    }

    /// Applies `action` for `session` with the request's form; the page body and a cookie to set, if any.
    pub fn apply(&self, action: Action, session: &str, headers: &HeaderMap, form: &[u8]) -> (String, Option<String>) {
        let field = |name: &str| form_urlencoded::parse(form).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let mut carts = self.carts.lock().unwrap_or_else(|e| e.into_inner());
        match action {
            Action::SetCurrency => {
                let currency = field("currency_code").unwrap_or_else(|| "USD".into());
                let cookie = format!("{CURRENCY_COOKIE}={currency}; Path=/; Max-Age={COOKIE_MAX_AGE_S}");
                (String::new(), Some(cookie))
            }
            Action::AddToCart => {
                let quantity: u32 = field("quantity").and_then(|q| q.parse().ok()).unwrap_or(1);
                if carts.len() >= MAX_CARTS && !carts.contains_key(session) {
                    carts.clear();
                }
                *carts.entry(session.to_string()).or_default() += quantity;
                (String::new(), None)
            }
            Action::ViewCart => {
                let items = carts.get(session).copied().unwrap_or(0);
                let currency = cookie(headers, CURRENCY_COOKIE).unwrap_or("USD");
                (format!("<html><body><h1>Cart</h1><p>{items} items, prices in {currency}</p></body></html>"), None)
            }
            Action::Checkout => {
                let items = carts.remove(session).unwrap_or(0);
                (format!("<html><body><h1>Your order is complete</h1><p>{items} items</p></body></html>"), None)
            }
            Action::Page => (String::from("<html><body><h1>Online Boutique</h1></body></html>"), None),
        }
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn sessions_carts_and_currency() {
        let shop = Storefront::for_app("online-boutique", 1).unwrap();
        assert!(Storefront::for_app("image-classifier", 1).is_none());
        let (id, set) = shop.session(&HeaderMap::new());
        assert!(set.unwrap().starts_with(&format!("shop_session-id={id}; Path=/")));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("shop_currency=EUR; shop_session-id={id}")).unwrap());
        assert_eq!(shop.session(&headers), (id.clone(), None));
        shop.apply(Action::AddToCart, &id, &headers, b"product_id=OLJCESPC7Z&quantity=3");
        let (page, _) = shop.apply(Action::ViewCart, &id, &headers, b"");
        assert!(page.contains("3 items, prices in EUR"), "{page}");
        let (page, _) = shop.apply(Action::Checkout, &id, &headers, b"");
        assert!(page.contains("3 items"));
        assert!(shop.apply(Action::ViewCart, &id, &headers, b"").0.contains("0 items"));
        let (_, cookie) = shop.apply(Action::SetCurrency, &id, &headers, b"currency_code=JPY");
        assert!(cookie.unwrap().starts_with("shop_currency=JPY"));
        let (other, _) = shop.session(&HeaderMap::new());
        assert_ne!(other, id);
    }
}
