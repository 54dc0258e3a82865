//! Support for the end-to-end tests: pcap files, unique EAL prefixes, the packet oracles.

pub mod pcap;

/// A file prefix unique to this process and `tag`, so EAL instances never collide.
pub fn file_prefix(tag: &str) -> String {
    format!("bbt-{tag}-{}", std::process::id())
}

/// A fresh scratch directory under the target directory, removed first if it exists.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("backbone-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
