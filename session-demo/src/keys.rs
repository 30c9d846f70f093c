//! The signing keys: from the environment, a key file, or generated once
//! into the data folder. Never a key written in the source.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// The environment variable holding the keys (base64, comma-separated, the
/// first one signing).
pub const KEY_ENV: &str = "SESSION_DEMO_KEY";

/// The key file generated in the data folder when no key is given.
pub const GENERATED_KEY_FILE: &str = "signing-key";

/// Random bytes in a generated key.
const GENERATED_KEY_BYTES: usize = 64;

/// Where the keys came from, to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// [`KEY_ENV`].
    Environment,
    /// A key file given with `--key-file`, or one generated earlier.
    File(PathBuf),
    /// Generated just now into this file.
    Generated(PathBuf),
}

/// The key ring, first key signing, and where it came from.
///
/// # Errors
///
/// A one-line reason: a key that is not base64, shorter than 32 bytes, an
/// unreadable or unwritable file.
pub fn load(
    from_env: Option<&str>,
    key_file: Option<&Path>,
    data_dir: &Path,
) -> Result<(Vec<Vec<u8>>, KeyOrigin), String> {
    if let Some(value) = from_env.filter(|v| !v.trim().is_empty()) {
        return Ok((parse(value.split(','), KEY_ENV)?, KeyOrigin::Environment));
    }
    let path = key_file.map_or_else(|| data_dir.join(GENERATED_KEY_FILE), Path::to_path_buf);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let keys = parse(text.lines(), &path.display().to_string())?;
            Ok((keys, KeyOrigin::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && key_file.is_none() => {
            let key = generate(&path)?;
            Ok((vec![key], KeyOrigin::Generated(path)))
        }
        Err(e) => Err(format!("cannot read key file {}: {e}", path.display())),
    }
}

/// Decode one key per item (blank items skipped).
fn parse<'a>(items: impl Iterator<Item = &'a str>, source: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut keys = Vec::new();
    for (i, item) in items.map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        // Accept both base64 alphabets, padded or not.
        let normal: String = item
            .chars()
            .filter(|&c| c != '=')
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let key = STANDARD_NO_PAD
            .decode(normal)
            .map_err(|_| format!("key {} in {source} is not base64", i + 1))?;
        if key.len() < session_tower::MIN_KEY_BYTES {
            return Err(format!(
                "key {} in {source} is {} bytes; at least {} are required",
                i + 1,
                key.len(),
                session_tower::MIN_KEY_BYTES
            ));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(format!("no key in {source}"));
    }
    Ok(keys)
}

/// Make a random key and keep it in `path`, readable by the owner only.
fn generate(path: &Path) -> Result<Vec<u8>, String> {
    let mut key = vec![0u8; GENERATED_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness for a key: {e}"))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
    writeln!(file, "{}", STANDARD.encode(&key))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_key_is_generated_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = load(None, None, dir.path()).unwrap();
        let path = dir.path().join(GENERATED_KEY_FILE);
        assert_eq!(origin, KeyOrigin::Generated(path.clone()));
        assert_eq!(first[0].len(), GENERATED_KEY_BYTES);
        let (again, origin) = load(None, None, dir.path()).unwrap();
        assert_eq!(origin, KeyOrigin::File(path.clone()));
        assert_eq!(again, first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
        }
    }

    #[test]
    fn the_environment_wins_and_rings_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let a = STANDARD.encode([1u8; 32]);
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([2u8; 40]);
        let (keys, origin) = load(Some(&format!("{a}, {b}")), None, dir.path()).unwrap();
        assert_eq!(origin, KeyOrigin::Environment);
        assert_eq!(keys, vec![vec![1u8; 32], vec![2u8; 40]]);
        assert!(!dir.path().join(GENERATED_KEY_FILE).exists());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let short = STANDARD.encode([1u8; 16]);
        let err = load(Some(&short), None, dir.path()).unwrap_err();
        assert!(err.contains("16 bytes"), "{err}");
        let err = load(Some("not base64!"), None, dir.path()).unwrap_err();
        assert!(err.contains("not base64"), "{err}");
        let missing = dir.path().join("nope");
        let err = load(None, Some(&missing), dir.path()).unwrap_err();
        assert!(err.contains("cannot read key file"), "{err}");
    }
}
