//! Files written for the file sources: `fetch --write DIR` (an X.509 context, in the layout
//! `FileSource` reads, `spiffe_mtls::source::FilePaths::fetch_layout`) and `jwt bundles --write
//! DIR` (`<trust-domain>.jwks`, what `JwtBundleFiles` reads).
//!
//! Every file is written to a temporary name in the same directory and renamed into place, so
//! a reader sees the old file or the new one, never a part. Bundles are written before the
//! SVIDs they verify, the key before its certificate. Files of the layout left by an earlier
//! run that the new write no longer holds (a trust domain that left the federation, an SVID
//! that is gone) are removed first, so a reader never keeps trusting them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use spiffe_mtls::jwt::{
    JwtBundle, JwtBundleSet, jwt_bundle_file_name, jwt_bundle_file_trust_domain,
};
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

/// Writes `files` into `dir` (created if needed): first removes every file of the layout
/// (`is_layout_file`) that `files` does not hold, then writes each file atomically, in order.
/// Returns the paths written and the stale ones removed.
///
/// # Errors
/// A message naming the file or directory that could not be written or removed.
fn write_layout(
    dir: &Path,
    files: &[File],
    is_layout_file: impl Fn(&str) -> bool,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
    for file in files {
        let path = write_atomically(dir, file)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(&file.name).display()))?;
        written.push(path);
    }
    Ok((written, removed))
}

/// Writes `context` into `dir` and returns the paths written and the stale ones removed.
///
/// # Errors
/// A message naming the file or directory that could not be written or removed.
pub fn write_context(
    dir: &Path,
    context: &X509Context,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    write_layout(dir, &files(context), is_layout_file)
}

/// Writes each JWT bundle of `bundles` to `dir/<trust-domain>.jwks` (mode 0644, JWK Set
/// documents), after removing every other `*.jwks` file of `dir`: the bundles of trust domains
/// no longer in the set (and any `.jwks` not written here), which `JwtBundleFiles` would
/// otherwise keep trusting. Returns the paths written and the ones removed.
///
/// # Errors
/// A message naming the file or directory that could not be written or removed.
pub fn write_jwt_bundles(
    dir: &Path,
    bundles: &JwtBundleSet,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let mut sorted: Vec<&JwtBundle> = bundles.iter().collect();
    sorted.sort_by(|a, b| a.trust_domain().cmp(b.trust_domain()));
    let files: Vec<File> = sorted
        .into_iter()
        .map(|bundle| File {
            name: jwt_bundle_file_name(bundle.trust_domain()),
            text: format!("{:#}\n", bundle.to_jwks()),
            private: false,
        })
        .collect();
    write_layout(dir, &files, |name| {
        jwt_bundle_file_trust_domain(name).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::{is_layout_file, write_jwt_bundles};
    use spiffe_mtls::jwt::{JwtBundle, JwtBundleSet};

    #[test]
    fn jwt_bundles_replace_the_jwks_files_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "partner.org.jwks",
            "example.org.jwks",
            "Stale.jwks",
            "notes.txt",
            ".partner.org.jwks.1.tmp",
        ] {
            std::fs::write(dir.path().join(name), "old").unwrap();
        }
        let jwks = br#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
          "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let bundles: JwtBundleSet =
            [JwtBundle::parse("example.org".parse().unwrap(), jwks).unwrap()]
                .into_iter()
                .collect();
        let (written, removed) = write_jwt_bundles(dir.path(), &bundles).unwrap();
        assert_eq!(written, [dir.path().join("example.org.jwks")]);
        assert_eq!(
            removed,
            [
                dir.path().join("Stale.jwks"),
                dir.path().join("partner.org.jwks")
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // The writer owns *.jwks only; other files and temporaries are not its to remove.
        assert_eq!(
            left,
            [".partner.org.jwks.1.tmp", "example.org.jwks", "notes.txt"]
        );
        let text = std::fs::read(dir.path().join("example.org.jwks")).unwrap();
        assert_eq!(
            JwtBundle::parse("example.org".parse().unwrap(), &text).unwrap(),
            *bundles.get(&"example.org".parse().unwrap()).unwrap()
        );
    }

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
