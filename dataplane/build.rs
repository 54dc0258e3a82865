//! Records the git commit the binary is built from (`backbone --version`), or what
//! `BACKBONE_GIT_COMMIT` says (a build from a tarball), or "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BACKBONE_GIT_COMMIT");
    let commit = std::env::var("BACKBONE_GIT_COMMIT").ok().or_else(|| {
        // Rebuilt when HEAD moves: its file, the branch it names, the packed refs.
        for path in ["HEAD", "packed-refs"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=BACKBONE_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
