//! `fetch --write DIR`: an X.509 context as files, in the layout `FileSource` reads
//! (`spiffe_mtls::source::FilePaths::fetch_layout`).
//!
//! Every file is written to a temporary name in the same directory and renamed into place, so
//! a reader sees the old file or the new one, never a part. Bundles are written before the
//! SVIDs they verify, the key before its certificate. Files left by an earlier run that the new
//! context no longer holds (a trust domain that left the federation, an SVID that is gone) are
//! removed first.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use spiffe_mtls::pem;
use spiffe_mtls::source::{X509Context, federated_bundle_file_name};

/// One file to write: its name, content, and whether only the owner may read it.
struct File {
    name: String,
    text: String,
    private: bool,
}

/// The files of `context`, in the order they are written.
fn files(context: &X509Context) -> Vec<File> {
    let mut files = Vec::new();
    let public = |name: String, text: String| File {
        name,
        text,
        private: false,
    };
    for (i, svid) in context.svids().iter().enumerate() {
        let own = svid.spiffe_id().trust_domain();
        if let Some(bundle) = context.bundles().get(own) {
            files.push(public(
                format!("bundle.{i}.pem"),
                pem::encode_certificates(bundle.roots()),
            ));
        }
        let mut federated: Vec<_> = context
            .bundles()
            .iter()
            .filter(|bundle| bundle.trust_domain() != own && !bundle.is_empty())
            .collect();
        federated.sort_by(|a, b| a.trust_domain().cmp(b.trust_domain()));
        for bundle in federated {
            files.push(public(
                federated_bundle_file_name(i, bundle.trust_domain()),
                pem::encode_certificates(bundle.roots()),
            ));
        }
        files.push(File {
            name: format!("svid.{i}.key"),
            text: pem::encode("PRIVATE KEY", svid.private_key().secret_der()),
            private: true,
        });
        files.push(public(
            format!("svid.{i}.pem"),
            pem::encode_certificates(svid.chain()),
        ));
    }
    files
}

/// Whether `name` is a file of this layout (`svid.N.pem`, `svid.N.key`, `bundle.N.pem`,
/// `federated_bundle.N.*.pem`), which a write may replace or remove.
fn is_layout_file(name: &str) -> bool {
    let indexed = |prefix: &str, suffix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let federated = name
        .strip_prefix("federated_bundle.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(n, rest)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && rest.ends_with(".pem")
        });
    indexed("svid.", ".pem") || indexed("svid.", ".key") || indexed("bundle.", ".pem") || federated
}

/// Writes `text` to `dir/name` through a temporary file and a rename.
fn write_atomically(dir: &Path, file: &File) -> std::io::Result<PathBuf> {
    let path = dir.join(&file.name);
    let temporary = dir.join(format!(".{}.{}.tmp", file.name, std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if file.private { 0o600 } else { 0o644 })
            .open(&temporary)?;
        out.write_all(file.text.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&temporary, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map(|()| path)
}

/// Writes a public file (mode 0644) `dir/name` atomically, creating `dir` if needed.
///
/// # Errors
/// A message naming the file or directory that could not be written.
pub(crate) fn write_public(dir: &Path, name: &str, text: String) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = File {
        name: name.to_owned(),
        text,
        private: false,
    };
    write_atomically(dir, &file)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
}

/// Writes `context` into `dir` and returns the paths written and the stale ones removed.
///
/// # Errors
/// A message naming the file or directory that could not be written or removed.
pub fn write_context(
    dir: &Path,
    context: &X509Context,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = files(context);
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_layout_file(name) && !files.iter().any(|file| file.name == name) {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove the stale {}: {e}", path.display()))?;
            removed.push(path);
        }
    }
    removed.sort();
    let mut written = Vec::with_capacity(files.len());
    for file in &files {
        let path = write_atomically(dir, file)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(&file.name).display()))?;
        written.push(path);
    }
    Ok((written, removed))
}

#[cfg(test)]
mod tests {
    use super::is_layout_file;

    #[test]
    fn layout_files_are_recognized() {
        for name in [
            "svid.0.pem",
            "svid.12.key",
            "bundle.1.pem",
            "federated_bundle.0.3.pem",
            "federated_bundle.0.td.partner.org.pem",
        ] {
            assert!(is_layout_file(name), "{name}");
        }
        for name in [
            "svid.pem",
            "svid.x.pem",
            "bundle.0.pem.bak",
            ".svid.0.pem.7.tmp",
            "notes.txt",
            "federated_bundle.pem",
            "federated_bundle.a.0.pem",
        ] {
            assert!(!is_layout_file(name), "{name}");
        }
    }
}
