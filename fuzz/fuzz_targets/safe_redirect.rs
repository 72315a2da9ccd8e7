//! `next` targets: whatever is kept is a same-origin absolute path without
//! control characters or backslashes, and resolves on our origin.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/service/safe_redirect.rs"]
mod safe_redirect;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(kept) = safe_redirect::local_path(text) else { return };
    assert_eq!(kept, text);
    assert!(kept.starts_with('/') && !kept.starts_with("//"), "{kept:?}");
    assert!(!kept.chars().any(|c| c.is_control() || c == '\\' || c.is_whitespace()), "{kept:?}");
    let base = url::Url::parse("https://latchkey.example/").unwrap();
    let resolved = base.join(kept).unwrap();
    assert_eq!(resolved.origin(), base.origin(), "{kept:?}");
    // The browser's view: tabs and newlines are stripped before parsing.
    let stripped: String = kept.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    assert_eq!(base.join(&stripped).unwrap().origin(), base.origin());
});
