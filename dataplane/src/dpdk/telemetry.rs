//! Telemetry commands of our own on DPDK's telemetry socket, beside DPDK's (`/ethdev/stats`,
//! `/eal/params`, ...): `dpdk-telemetry.py -f PREFIX` lists and runs them.
//!
//! DPDK 22.11 calls a command's callback on its telemetry thread with the command and its
//! parameters (the text after a comma), and no pointer of ours; so every command we
//! [`register`] goes through one trampoline to one [`Handler`], installed with
//! [`set_handler`]. Without a handler (before the appliance is up, after it stopped) a
//! command answers `null`.
//!
//! An answer is JSON, written the way DPDK 22.11 can encode it: an object becomes a
//! dictionary (an object inside it is flattened into `outer/inner` names, as DPDK allows
//! no dictionary inside another), an array of numbers or of strings an array, `true` and
//! `false` 1 and 0; numbers that are not unsigned integers are written as strings, `null`
//! is left out. Characters other than letters, digits, `_` and `/` in a name become `_`;
//! strings longer than 127 bytes are cut; entries beyond DPDK's limits (256 per
//! dictionary, 512 per array) are left out.

use super::eal::Eal;
use super::error::{DpdkError, Result};
use serde_json::Value;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::RwLock;

/// Answers a command (`/backbone/tunnel`) with its parameters (`acme`, or empty); `None`
/// for a command it does not know or parameters it refuses (the client sees `null`).
pub type Handler = Box<dyn Fn(&str, &str) -> Option<Value> + Send + Sync>;

static HANDLER: RwLock<Option<Handler>> = RwLock::new(None);

/// Longest command name DPDK 22.11 takes (its `MAX_CMD_LEN`, the NUL included).
const MAX_CMD_LEN: usize = 56;
/// Longest string value or help text (`RTE_TEL_MAX_STRING_LEN`, the NUL included).
const MAX_STRING_LEN: usize = 128;

/// Add `cmd` (a `/`-led name of letters, digits, `_` and `/`) to DPDK's telemetry, with a
/// one-line `help`. DPDK keeps commands until the process ends.
pub fn register(_eal: &Eal, cmd: &str, help: &str) -> Result<()> {
    let valid = cmd.starts_with('/')
        && cmd.len() < MAX_CMD_LEN
        && cmd
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'/');
    if !valid || help.len() >= MAX_STRING_LEN {
        return Err(DpdkError::Unsupported(format!(
            "telemetry command {cmd:?}: a name of at most {} letters, digits, '_' and '/' \
             starting with '/', and help under {MAX_STRING_LEN} bytes",
            MAX_CMD_LEN - 1
        )));
    }
    let c_cmd = CString::new(cmd).map_err(|_| DpdkError::NulInArgument(cmd.into()))?;
    let c_help = CString::new(help).map_err(|_| DpdkError::NulInArgument(help.into()))?;
    // SAFETY: both strings are NUL-terminated and within DPDK's lengths, and DPDK copies
    // both into its own table (strlcpy) before returning; the callback is a function that
    // lives as long as the program.
    let ret = unsafe {
        dpdk_sys::rte_telemetry_register_cmd(c_cmd.as_ptr(), Some(trampoline), c_help.as_ptr())
    };
    if ret != 0 {
        return Err(DpdkError::Unsupported(format!(
            "telemetry command {cmd}: rte_telemetry_register_cmd returned {ret}"
        )));
    }
    Ok(())
}

/// Install (or, with `None`, remove) the one handler of every registered command.
pub fn set_handler(handler: Option<Handler>) {
    *HANDLER.write().unwrap_or_else(|e| e.into_inner()) = handler;
}

/// The callback DPDK calls for each of our commands, on its telemetry thread.
unsafe extern "C" fn trampoline(
    cmd: *const c_char,
    params: *const c_char,
    info: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    if cmd.is_null() || info.is_null() {
        return -1;
    }
    // SAFETY: DPDK passes the NUL-terminated command it matched, valid during the call.
    let cmd = unsafe { CStr::from_ptr(cmd) }.to_string_lossy();
    let params = if params.is_null() {
        String::new()
    } else {
        // SAFETY: non-null: the NUL-terminated text after the comma, valid during the call.
        unsafe { CStr::from_ptr(params) }
            .to_string_lossy()
            .into_owned()
    };
    // A panic must not unwind into C.
    let answer = std::panic::catch_unwind(|| {
        let handler = HANDLER.read().unwrap_or_else(|e| e.into_inner());
        handler.as_ref().and_then(|h| h(&cmd, &params))
    });
    match answer {
        Ok(Some(value)) => {
            // SAFETY: info is the data structure DPDK passed for this answer.
            unsafe { fill(info, &value) };
            0
        }
        _ => -1,
    }
}

/// `s` as a C string of at most `MAX_STRING_LEN - 1` bytes (cut at a character boundary),
/// NULs replaced.
fn c_string(s: &str) -> CString {
    let mut end = s.len().min(MAX_STRING_LEN - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    CString::new(s[..end].replace('\0', "_")).unwrap_or_default()
}

/// A dictionary name DPDK accepts.
fn c_name(name: &str) -> CString {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '/' {
                c
            } else {
                '_'
            }
        })
        .collect();
    c_string(&clean)
}

/// How a JSON value is written inside a dictionary or an array.
enum Scalar {
    U64(u64),
    Int(i32),
    Str(String),
}

fn scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::Null | Value::Array(_) | Value::Object(_) => None,
        Value::Bool(b) => Some(Scalar::U64(u64::from(*b))),
        Value::Number(n) => Some(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Scalar::U64(u),
            (None, Some(i)) => {
                i32::try_from(i).map_or_else(|_| Scalar::Str(i.to_string()), Scalar::Int)
            }
            _ => Scalar::Str(n.to_string()),
        }),
        Value::String(s) => Some(Scalar::Str(s.clone())),
    }
}

/// Write `value` as the whole answer.
///
/// # Safety
/// `d` must be a valid, empty `rte_tel_data` (as DPDK passes to a callback, or as
/// `rte_tel_data_alloc` returns).
unsafe fn fill(d: *mut dpdk_sys::rte_tel_data, value: &Value) {
    match value {
        Value::Object(entries) => {
            // SAFETY: d is valid (this function's contract).
            unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
            // SAFETY: d is a started dictionary.
            unsafe { add_entries(d, "", entries) };
        }
        Value::Array(items) => {
            // SAFETY: d is valid and empty.
            unsafe { fill_array(d, items) };
        }
        other => {
            let text = match scalar(other) {
                Some(Scalar::Str(s)) => s,
                Some(Scalar::U64(x)) => x.to_string(),
                Some(Scalar::Int(x)) => x.to_string(),
                None => String::new(),
            };
            let s = c_string(&text);
            // SAFETY: d is valid; s is NUL-terminated and DPDK copies it.
            unsafe { dpdk_sys::rte_tel_data_string(d, s.as_ptr()) };
        }
    }
}

/// Fill an empty `d` with an array: of numbers when every item is an unsigned integer
/// (or a bool), else of strings (an item that is not a string written as JSON).
///
/// # Safety
/// `d` must be a valid, empty `rte_tel_data`.
unsafe fn fill_array(d: *mut dpdk_sys::rte_tel_data, items: &[Value]) {
    let numbers: Option<Vec<u64>> = items
        .iter()
        .map(|v| match scalar(v) {
            Some(Scalar::U64(x)) => Some(x),
            _ => None,
        })
        .collect();
    match numbers {
        Some(xs) => {
            // SAFETY: d is valid and empty.
            unsafe { dpdk_sys::rte_tel_data_start_array(d, dpdk_sys::RTE_TEL_U64_VAL) };
            for x in xs {
                // SAFETY: d is a started array of u64; a full array refuses (left out).
                unsafe { dpdk_sys::rte_tel_data_add_array_u64(d, x) };
            }
        }
        None => {
            // SAFETY: d is valid and empty.
            unsafe { dpdk_sys::rte_tel_data_start_array(d, dpdk_sys::RTE_TEL_STRING_VAL) };
            for v in items {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let s = c_string(&text);
                // SAFETY: d is a started array of strings; DPDK copies s.
                unsafe { dpdk_sys::rte_tel_data_add_array_string(d, s.as_ptr()) };
            }
        }
    }
}

/// Add `entries` to the started dictionary `d`, their names after `prefix`.
///
/// # Safety
/// `d` must be a valid `rte_tel_data` started as a dictionary.
unsafe fn add_entries(
    d: *mut dpdk_sys::rte_tel_data,
    prefix: &str,
    entries: &serde_json::Map<String, Value>,
) {
    for (name, value) in entries {
        let full = format!("{prefix}{name}");
        let c = c_name(&full);
        match value {
            Value::Object(inner) => {
                // SAFETY: d is a started dictionary (this function's contract).
                unsafe { add_entries(d, &format!("{full}/"), inner) };
            }
            Value::Array(items) => {
                // SAFETY: allocates an empty data structure, or returns null.
                let inner = unsafe { dpdk_sys::rte_tel_data_alloc() };
                if inner.is_null() {
                    continue;
                }
                // SAFETY: inner is valid and empty.
                unsafe { fill_array(inner, items) };
                // SAFETY: d is a started dictionary, inner an array; with keep = 0 DPDK
                // frees inner once the answer is written.
                let ret =
                    unsafe { dpdk_sys::rte_tel_data_add_dict_container(d, c.as_ptr(), inner, 0) };
                if ret != 0 {
                    // Not taken (the dictionary is full): ours to free.
                    // SAFETY: inner came from rte_tel_data_alloc and nothing refers to it.
                    unsafe { dpdk_sys::rte_tel_data_free(inner) };
                }
            }
            other => match scalar(other) {
                Some(Scalar::U64(x)) => {
                    // SAFETY: d is a started dictionary; DPDK copies the name.
                    unsafe { dpdk_sys::rte_tel_data_add_dict_u64(d, c.as_ptr(), x) };
                }
                Some(Scalar::Int(x)) => {
                    // SAFETY: as above.
                    unsafe { dpdk_sys::rte_tel_data_add_dict_int(d, c.as_ptr(), x) };
                }
                Some(Scalar::Str(x)) => {
                    let s = c_string(&x);
                    // SAFETY: as above; DPDK copies the value too.
                    unsafe { dpdk_sys::rte_tel_data_add_dict_string(d, c.as_ptr(), s.as_ptr()) };
                }
                None => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings_fit_dpdk() {
        assert_eq!(c_name("client-a rx").to_str().unwrap(), "client_a_rx");
        assert_eq!(
            c_name("ports/0/rx_packets").to_str().unwrap(),
            "ports/0/rx_packets"
        );
        assert_eq!(c_string(&"é".repeat(100)).as_bytes().len(), 126);
        assert_eq!(c_string("a\0b").to_str().unwrap(), "a_b");
    }
}
