//! The interface between the Node.js handler and the wasm module.
//!
//! Input (UTF-8): `method NUL uri NUL querystring`. Output (UTF-8), one of:
//! `P` (pass), `U<uri>` (rewrite), `R<status> <location>` (redirect), `E<status> <reason>`.
//! The handler applies the decision to the event itself, so every field no rule changes is
//! returned exactly as it came.

use std::cell::RefCell;

use crate::config::{ConfigError, Options};
use crate::rules::{Decision, decide};

/// Encodes a decision for the handler.
pub fn encode(decision: &Decision) -> Vec<u8> {
    match decision {
        Decision::Pass => b"P".to_vec(),
        Decision::Rewrite(uri) => format!("U{uri}").into_bytes(),
        Decision::Redirect { status, location } => format!("R{status} {location}").into_bytes(),
        Decision::Reject { status, reason } => format!("E{status} {reason}").into_bytes(),
    }
}

/// Decodes the handler's input and decides.
pub fn handle(input: &[u8], opts: &Options) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(input) else {
        return encode(&Decision::Reject {
            status: 400,
            reason: "the request is not valid UTF-8",
        });
    };
    let mut parts = text.splitn(3, '\0');
    let (method, uri, querystring) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    encode(&decide(method, uri, querystring, opts))
}

thread_local! {
    static OPTIONS: RefCell<Options> = RefCell::new(Options::default());
}

/// Replaces the options from `config.json`; `Err` with the reason when they are invalid.
pub fn configure(json: &[u8]) -> Result<(), ConfigError> {
    let text = std::str::from_utf8(json).map_err(|_| ConfigError::NotUtf8)?;
    let opts = Options::from_json(text)?;
    OPTIONS.with(|o| *o.borrow_mut() = opts);
    Ok(())
}

/// Decides with the configured options.
pub fn handle_configured(input: &[u8]) -> Vec<u8> {
    OPTIONS.with(|o| handle(input, &o.borrow()))
}

#[cfg(target_arch = "wasm32")]
mod exports {
    //! The raw exports. Buffers cross the boundary as boxed slices: `alloc` hands one to the
    //! handler to write into; `decide`/`configure` consume it and return another
    //! (`ptr << 32 | len`), which the handler frees with `dealloc` after reading.

    fn leak(bytes: Vec<u8>) -> u64 {
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len() as u64;
        let ptr = Box::into_raw(boxed) as *mut u8 as usize as u64;
        (ptr << 32) | len
    }

    /// # Safety
    /// `ptr`/`len` must come from `alloc` and not be used afterwards.
    unsafe fn take(ptr: *mut u8, len: usize) -> Box<[u8]> {
        // SAFETY: the caller passes back a buffer `alloc` leaked with exactly this length.
        unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
    }

    #[unsafe(no_mangle)]
    pub extern "C" fn alloc(len: usize) -> *mut u8 {
        Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8
    }

    /// # Safety
    /// `ptr`/`len` must come from `alloc` or a returned buffer, freed once.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn dealloc(ptr: *mut u8, len: usize) {
        drop(unsafe { take(ptr, len) });
    }

    /// Returns an empty buffer when the options are valid, else the reason.
    ///
    /// # Safety
    /// `ptr`/`len` must come from `alloc`; the buffer is consumed.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn configure(ptr: *mut u8, len: usize) -> u64 {
        let input = unsafe { take(ptr, len) };
        let problem = super::configure(&input).err().map(|e| e.to_string());
        leak(problem.unwrap_or_default().into_bytes())
    }

    /// # Safety
    /// `ptr`/`len` must come from `alloc`; the buffer is consumed.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn decide(ptr: *mut u8, len: usize) -> u64 {
        let input = unsafe { take(ptr, len) };
        leak(super::handle_configured(&input))
    }
}
