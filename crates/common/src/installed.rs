//! What `scripts/install-deps.sh` installed, found without repeating its versions: they are
//! written once, in `scripts/lib/env.sh`, and each install lands in
//! `$VP_CACHE_DIR/<name>-<version>/` (default `~/.cache/video-pipeline`). The scripts pass
//! exact paths to what they start; this is the default for a binary or a test run by hand.

use std::path::{Path, PathBuf};

/// The cache directory of the scripts' installs.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VP_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/video-pipeline")
        })
}

/// One installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub dir: PathBuf,
    pub version: String,
}

/// The newest version of `name` installed, judged by `has` (what the install must contain,
/// given its directory and version).
pub fn newest(name: &str, has: impl Fn(&Installed) -> Option<PathBuf>) -> Option<PathBuf> {
    newest_in(&cache_dir(), name, has)
}

fn newest_in(
    cache: &Path,
    name: &str,
    has: impl Fn(&Installed) -> Option<PathBuf>,
) -> Option<PathBuf> {
    let prefix = format!("{name}-");
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let version = file_name.to_str()?.strip_prefix(&prefix)?.to_string();
            let key = version_key(&version)?;
            let path = has(&Installed {
                dir: entry.path(),
                version,
            })?;
            path.exists().then_some((key, path))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, path)| path)
}

/// `1.31.1` as `[1, 31, 1]`, so that 1.31 sorts above 1.9; `None` for other names.
fn version_key(version: &str) -> Option<Vec<u64>> {
    version.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_that_has_the_file_wins() {
        let cache = std::env::temp_dir().join(format!("vp-installed-{}", std::process::id()));
        for (dir, file) in [
            ("onnxruntime-1.9.0", Some("lib.so.1.9.0")),
            ("onnxruntime-1.31.1", Some("lib.so.1.31.1")),
            ("onnxruntime-1.40.0", None),
            ("onnxruntime-next", Some("lib.so.next")),
        ] {
            let dir = cache.join(dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            if let Some(file) = file {
                std::fs::write(dir.join(file), b"").expect("temp file");
            }
        }
        let library = |i: &Installed| Some(i.dir.join(format!("lib.so.{}", i.version)));
        assert_eq!(
            newest_in(&cache, "onnxruntime", library),
            Some(cache.join("onnxruntime-1.31.1/lib.so.1.31.1"))
        );
        assert_eq!(newest_in(&cache, "moto", library), None);
        assert_eq!(newest_in(&cache.join("absent"), "tansu", library), None);
        let _ = std::fs::remove_dir_all(&cache);
    }
}
