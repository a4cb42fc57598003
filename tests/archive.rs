//! The archive data plane: round trips of directories and streams, interop with the standard
//! `age`, `zstd` and `tar` tools both ways, tampering and truncation detected with one clear
//! sentence, and every escape attempt of a hostile archive refused.

mod common;

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::archive::{
    age_with_passphrase, assert_same_tree, dir_in, has_tool, make_tree, noise, sh, shell_path,
};
use common::require;
use runbook::archive::{
    self, generate_identity, parse_recipient, seal, seal_dir, sha256_file, unpack, unseal,
    Compression, Encryption, Error, ExtractOptions, Key, Problem, SealOptions, UnsealOptions,
};
use runbook::secrets::Secret;

/// Low enough to keep the tests fast; the default (18) is what operators get.
const TEST_WORK_FACTOR: u8 = 10;

fn passphrase() -> Secret {
    Secret::new("correct horse battery staple")
}

fn by_passphrase() -> SealOptions {
    SealOptions::new(Encryption::Passphrase {
        passphrase: passphrase(),
        work_factor: TEST_WORK_FACTOR,
    })
}

fn passphrase_key() -> UnsealOptions {
    UnsealOptions::new(Key::Passphrase(passphrase()))
}

struct KeyPair {
    recipient: String,
    identity_file: PathBuf,
}

fn key_pair(dir: &Path) -> KeyPair {
    let generated = generate_identity();
    let identity_file = dir.join(format!("key-{}.txt", &generated.recipient[4..12]));
    std::fs::write(
        &identity_file,
        generated.identity_file("2026-11-23T00:00:00Z"),
    )
    .unwrap();
    KeyPair {
        recipient: generated.recipient,
        identity_file,
    }
}

fn to_recipient(pair: &KeyPair) -> SealOptions {
    SealOptions::new(Encryption::Recipients(vec![parse_recipient(
        &pair.recipient,
    )
    .unwrap()]))
}

fn with_identity(pair: &KeyPair) -> UnsealOptions {
    UnsealOptions::new(Key::Identities(
        archive::read_identity_file(&pair.identity_file).unwrap(),
    ))
}

fn unseal_all(path: &Path, options: &UnsealOptions) -> Result<Vec<u8>, Error> {
    let mut reader = unseal(path, options)?;
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .map_err(|e| Error::from_io(e, path, "read"))?;
    Ok(out)
}

fn expect_err<T>(result: Result<T, Error>) -> Error {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// One sentence: no line breaks, names the file.
fn assert_one_sentence(e: &Error, file: &Path) {
    let message = e.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains(&file.display().to_string()),
        "the file is not named: {message}"
    );
}

// ---- round trips ------------------------------------------------------------------------

#[test]
fn directory_round_trip_keeps_content_modes_owners_links_and_empty_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("volume");
    make_tree(&source);
    let pair = key_pair(tmp.path());
    for (label, seal_options, unseal_options, compression) in [
        (
            "passphrase",
            by_passphrase(),
            passphrase_key(),
            Compression::default(),
        ),
        (
            "recipients",
            to_recipient(&pair),
            with_identity(&pair),
            Compression::Gzip { level: 6 },
        ),
        (
            "plain",
            SealOptions::new(Encryption::None),
            UnsealOptions::new(Key::None),
            Compression::None,
        ),
    ] {
        let dest = tmp.path().join(format!("volume-{label}.tar.age"));
        let options = SealOptions {
            compression,
            ..seal_options
        };
        let sealed = seal_dir(&source, &dest, &options).unwrap();
        assert_eq!(sealed.sha256, sha256_file(&dest).unwrap(), "{label}");
        assert_eq!(sealed.bytes, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(
            std::fs::metadata(&dest).unwrap().mode() & 0o777,
            0o600,
            "archives are private"
        );
        assert!(sealed.skipped.is_empty() && sealed.changed.is_empty());

        let restored = tmp.path().join(format!("restored-{label}"));
        let done = unpack(
            &dest,
            &restored,
            &UnsealOptions {
                sha256: Some(sealed.sha256.clone()),
                size: Some(sealed.bytes),
                ..unseal_options
            },
            &ExtractOptions::new(),
        )
        .unwrap();
        assert_eq!(done.entries, sealed.entries.unwrap(), "{label}");
        assert_eq!(done.sha256.as_deref(), Some(sealed.sha256.as_str()));
        assert_same_tree(&source, &restored);
    }
    // The walk leaves nothing behind but the archives.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn two_gib_sparse_file_round_trips_small_and_sparse() {
    let tmp = tempfile::tempdir().unwrap();
    let source = dir_in(tmp.path(), "volume");
    let big = source.join("disk.img");
    let file = std::fs::File::create(&big).unwrap();
    let size = 2u64 << 30;
    file.set_len(size).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    for (i, at) in [0u64, 700 << 20, (2 << 30) - 4096].into_iter().enumerate() {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&noise(4096, i as u64 + 1)).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);

    let pair = key_pair(tmp.path());
    let dest = tmp.path().join("sparse.tar.zst.age");
    let sealed = seal_dir(&source, &dest, &to_recipient(&pair)).unwrap();
    assert!(
        sealed.bytes < 1 << 20,
        "a 2 GiB file with 12 KiB of data seals to {} bytes",
        sealed.bytes
    );

    let restored = tmp.path().join("restored");
    unpack(
        &dest,
        &restored,
        &with_identity(&pair),
        &ExtractOptions::new(),
    )
    .unwrap();
    let back = std::fs::metadata(restored.join("disk.img")).unwrap();
    assert_eq!(back.len(), size);
    assert!(
        back.blocks() * 512 < 16 << 20,
        "the restored file is sparse ({} blocks)",
        back.blocks()
    );
    assert_eq!(
        sha256_file(&big).unwrap(),
        sha256_file(&restored.join("disk.img")).unwrap()
    );
}

#[test]
fn any_stream_round_trips_with_every_compression_and_encryption() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = key_pair(tmp.path());
    let mut data = "INSERT INTO t VALUES (1, 'row');\n"
        .repeat(50_000)
        .into_bytes();
    data.extend(noise(300_000, 3));
    for compression in [
        Compression::default(),
        Compression::Zstd {
            level: 1,
            workers: 0,
        },
        Compression::Gzip { level: 1 },
        Compression::None,
    ] {
        for (seal_options, unseal_options) in [
            (by_passphrase(), passphrase_key()),
            (to_recipient(&pair), with_identity(&pair)),
            (
                SealOptions::new(Encryption::None),
                UnsealOptions::new(Key::None),
            ),
        ] {
            let dest = tmp.path().join("dump.sql.sealed");
            let options = SealOptions {
                compression,
                ..seal_options
            };
            let sealed = seal(Cursor::new(&data), &dest, &options).unwrap();
            assert_eq!(sealed.input_bytes, data.len() as u64);
            assert_eq!(sealed.entries, None);
            let reader = unseal(&dest, &unseal_options).unwrap();
            assert_eq!(reader.compression(), compression.name());
            assert_eq!(reader.encryption(), options.encryption.name());
            assert_eq!(unseal_all(&dest, &unseal_options).unwrap(), data);
            let verified = archive::verify(
                &dest,
                &UnsealOptions {
                    sha256: Some(sealed.sha256.clone()),
                    ..unseal_options
                },
            )
            .unwrap();
            assert_eq!(verified.content_bytes, data.len() as u64);
            assert_eq!(verified.sha256, sealed.sha256);
        }
    }
}

#[test]
fn verify_and_list_read_a_sealed_directory_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("volume");
    make_tree(&source);
    let dest = tmp.path().join("v.tar.zst.age");
    let sealed = seal_dir(&source, &dest, &by_passphrase()).unwrap();
    let verified = archive::verify(&dest, &passphrase_key()).unwrap();
    assert_eq!(verified.entries, sealed.entries);
    assert_eq!(verified.encryption, "age-passphrase");

    let mut reader = unseal(&dest, &passphrase_key()).unwrap();
    let entries = archive::list(&mut reader, &dest).unwrap();
    assert_eq!(reader.finish().unwrap(), sealed.sha256);
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not listed"))
    };
    assert_eq!(find("etc/secret.key").mode, 0o600);
    assert_eq!(find("bin/conf-link").kind, "symlink");
    assert_eq!(
        find("bin/conf-link").link.as_deref(),
        Some("../etc/app.conf")
    );
    assert_eq!(find("empty/dir").kind, "dir");
    assert_eq!(find("data/blob.bin").size, 3 << 20);
}

// ---- interop with the standard tools ------------------------------------------------------

fn tools_available() -> bool {
    let missing: Vec<_> = ["age", "age-keygen", "zstd", "tar", "script"]
        .into_iter()
        .filter(|t| !has_tool(t))
        .collect();
    require(
        "the age, zstd, tar and script tools",
        missing.is_empty(),
        &format!("missing {missing:?}; apt-get install age zstd tar util-linux"),
    )
}

#[test]
fn standard_tools_open_what_runbook_seals() {
    if !tools_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("volume");
    make_tree(&source);

    // X25519: age -d -i KEY | zstd -d | tar -x
    let pair = key_pair(tmp.path());
    let dest = tmp.path().join("v.tar.zst.age");
    let sealed = seal_dir(&source, &dest, &to_recipient(&pair)).unwrap();
    assert_eq!(
        sh(&format!("sha256sum {}", shell_path(&dest)))
            .split_whitespace()
            .next(),
        Some(sealed.sha256.as_str()),
        "sha256sum agrees with the checksum computed on the way"
    );
    let out = dir_in(tmp.path(), "by-tools");
    sh(&format!(
        "age -d -i {} {} | zstd -d | tar -x --numeric-owner -C {}",
        shell_path(&pair.identity_file),
        shell_path(&dest),
        shell_path(&out)
    ));
    assert_same_tree(&source, &out);

    // Passphrase (scrypt at the default work factor): age -d, typed at its terminal prompt.
    let dest = tmp.path().join("p.tar.gz.age");
    let options = SealOptions {
        compression: Compression::Gzip { level: 6 },
        ..SealOptions::new(Encryption::Passphrase {
            passphrase: passphrase(),
            work_factor: archive::DEFAULT_WORK_FACTOR,
        })
    };
    seal_dir(&source, &dest, &options).unwrap();
    let tar_gz = tmp.path().join("p.tar.gz");
    age_with_passphrase(
        &format!("-d -o {} {}", shell_path(&tar_gz), shell_path(&dest)),
        passphrase().expose(),
        1,
    );
    let out = dir_in(tmp.path(), "by-tools-passphrase");
    sh(&format!(
        "tar -xz --numeric-owner -f {} -C {}",
        shell_path(&tar_gz),
        shell_path(&out)
    ));
    assert_same_tree(&source, &out);

    // A stream: zstd -d of an unencrypted seal gives the bytes back.
    let data = noise(200_000, 9);
    let dest = tmp.path().join("s.zst");
    seal(
        Cursor::new(&data),
        &dest,
        &SealOptions::new(Encryption::None),
    )
    .unwrap();
    let back = tmp.path().join("s");
    sh(&format!(
        "zstd -q -d {} -o {}",
        shell_path(&dest),
        shell_path(&back)
    ));
    assert_eq!(std::fs::read(back).unwrap(), data);
}

#[test]
fn runbook_opens_what_the_standard_tools_write() {
    if !tools_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("volume");
    make_tree(&source);
    // A sparse file too: GNU tar's own sparse format.
    let sparse = source.join("data/sparse.img");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .unwrap()
        .write_all(b"head")
        .unwrap();
    common::archive::set_mtime(&sparse, 1_600_000_000);
    common::archive::set_mtime(&source.join("data"), 1_600_000_000);

    // tar | zstd | age -r with a key from age-keygen.
    let key = tmp.path().join("age-keygen.txt");
    sh(&format!("age-keygen -o {} 2>/dev/null", shell_path(&key)));
    let recipient = sh(&format!("age-keygen -y {}", shell_path(&key)));
    let dest = tmp.path().join("shell.tar.zst.age");
    sh(&format!(
        "tar -c --sparse --numeric-owner -C {} . | zstd -3 -T0 -q | age -r {} > {}",
        shell_path(&source),
        recipient.trim(),
        shell_path(&dest)
    ));
    let identities = archive::read_identity_file(&key).unwrap();
    let out = tmp.path().join("restored-x25519");
    let done = unpack(
        &dest,
        &out,
        &UnsealOptions::new(Key::Identities(identities.clone())),
        &ExtractOptions::new(),
    )
    .unwrap();
    assert_eq!(done.sha256.unwrap(), sha256_file(&dest).unwrap());
    assert_same_tree(&source, &out);
    assert!(
        std::fs::metadata(out.join("data/sparse.img"))
            .unwrap()
            .blocks()
            * 512
            < 1 << 20,
        "GNU tar's sparse entry comes back sparse"
    );

    // ASCII-armored (age -a).
    let armored = tmp.path().join("stream.age.asc");
    let data = noise(150_000, 5);
    std::fs::write(tmp.path().join("stream.bin"), &data).unwrap();
    sh(&format!(
        "age -a -r {} -o {} {}",
        recipient.trim(),
        shell_path(&armored),
        shell_path(&tmp.path().join("stream.bin"))
    ));
    assert_eq!(
        unseal_all(&armored, &UnsealOptions::new(Key::Identities(identities))).unwrap(),
        data
    );

    // tar -cz | age -p (passphrase typed at age's prompt, twice).
    let tar_gz = tmp.path().join("shell.tar.gz");
    sh(&format!(
        "tar -cz --numeric-owner -C {} -f {} .",
        shell_path(&source),
        shell_path(&tar_gz)
    ));
    let dest = tmp.path().join("shell.tar.gz.age");
    age_with_passphrase(
        &format!("-p -o {} {}", shell_path(&dest), shell_path(&tar_gz)),
        passphrase().expose(),
        2,
    );
    let out = tmp.path().join("restored-passphrase");
    unpack(&dest, &out, &passphrase_key(), &ExtractOptions::new()).unwrap();
    assert_same_tree(&source, &out);

    // Unencrypted tar --zstd and plain tar open with no key.
    for (flag, name) in [("--zstd", "plain.tar.zst"), ("", "plain.tar")] {
        let file = tmp.path().join(name);
        sh(&format!(
            "tar -c {flag} --numeric-owner -C {} -f {} .",
            shell_path(&source),
            shell_path(&file)
        ));
        let out = tmp.path().join(format!("restored-{name}"));
        unpack(
            &file,
            &out,
            &UnsealOptions::new(Key::None),
            &ExtractOptions::new(),
        )
        .unwrap();
        assert_same_tree(&source, &out);
    }
}

// ---- tampering, truncation, wrong keys ----------------------------------------------------

/// Flips one bit at each of `positions` of a sealed file; every flip must fail to open or
/// read, with one sentence naming the file. Returns the messages.
fn flip_each(
    original: &[u8],
    positions: impl Iterator<Item = usize>,
    key: &UnsealOptions,
    at: &Path,
) -> Vec<(usize, String)> {
    let mut messages = Vec::new();
    let mut undetected = Vec::new();
    for i in positions {
        let mut bytes = original.to_vec();
        bytes[i] ^= 0x01;
        std::fs::write(at, &bytes).unwrap();
        match unseal_all(at, key) {
            Ok(_) => undetected.push(i),
            Err(e) => {
                assert_one_sentence(&e, at);
                messages.push((i, e.to_string()));
            }
        }
    }
    assert!(
        undetected.is_empty(),
        "{} flipped bytes went unnoticed, first at {:?}",
        undetected.len(),
        &undetected[..undetected.len().min(10)]
    );
    messages
}

#[test]
fn every_flipped_byte_of_an_encrypted_file_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = key_pair(tmp.path());
    let key = with_identity(&pair);
    let options = SealOptions {
        compression: Compression::None,
        ..to_recipient(&pair)
    };
    let flipped = tmp.path().join("flipped.age");

    // Every byte of a small file: header, its MAC, the nonce, the one chunk and its tag.
    let dest = tmp.path().join("small.age");
    seal(Cursor::new(noise(1000, 11)), &dest, &options).unwrap();
    let original = std::fs::read(&dest).unwrap();
    flip_each(&original, 0..original.len(), &key, &flipped);

    // A file of two 64 KiB chunks: the header again, both sides of the chunk boundary, the
    // tags, the end, and a stride through the rest.
    let dest = tmp.path().join("two-chunks.age");
    seal(Cursor::new(noise(70_000, 12)), &dest, &options).unwrap();
    let original = std::fs::read(&dest).unwrap();
    let body = original.len() - (70_000 + 2 * 16);
    let boundary = body + 65_536 + 16;
    let positions = (0..body + 64)
        .chain(boundary - 64..boundary + 64)
        .chain(original.len() - 64..original.len())
        .chain((body..original.len()).step_by(97));
    let messages = flip_each(&original, positions, &key, &flipped);
    let in_first_chunk = messages
        .iter()
        .find(|(i, _)| (body + 100..boundary - 100).contains(i))
        .unwrap();
    assert!(
        in_first_chunk.1.contains("altered") && in_first_chunk.1.contains("does not authenticate"),
        "{}",
        in_first_chunk.1
    );
}

#[test]
fn wrong_passphrase_and_wrong_key_say_so_in_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("db.sql.zst.age");
    seal(Cursor::new(b"select 1;"), &dest, &by_passphrase()).unwrap();

    let wrong = UnsealOptions {
        artifact: Some("database `shop`".into()),
        ..UnsealOptions::new(Key::Passphrase(Secret::new("not the passphrase")))
    };
    let e = expect_err(unseal(&dest, &wrong));
    assert_eq!(
        e.to_string(),
        format!("database `shop` ({}): wrong passphrase", dest.display())
    );

    let pair = key_pair(tmp.path());
    let e = expect_err(unseal(&dest, &with_identity(&pair)));
    assert!(matches!(e.problem, Problem::NeedsPassphrase), "{e}");
    let e = expect_err(unseal(&dest, &UnsealOptions::new(Key::None)));
    assert!(
        e.to_string().contains("give a passphrase or an identity"),
        "{e}"
    );

    let dest = tmp.path().join("to-key.age");
    seal(Cursor::new(b"x"), &dest, &to_recipient(&pair)).unwrap();
    let other = key_pair(&dir_in(tmp.path(), "other"));
    let e = expect_err(unseal(&dest, &with_identity(&other)));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: none of the given identities can open it (it is encrypted to other recipients)",
            dest.display()
        )
    );
    let e = expect_err(unseal(&dest, &passphrase_key()));
    assert!(matches!(e.problem, Problem::NeedsIdentity), "{e}");

    let plain = tmp.path().join("plain.zst");
    seal(
        Cursor::new(b"x"),
        &plain,
        &SealOptions::new(Encryption::None),
    )
    .unwrap();
    let e = expect_err(unseal(&plain, &passphrase_key()));
    assert!(matches!(e.problem, Problem::NotEncrypted), "{e}");
}

#[test]
fn a_truncated_file_says_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = key_pair(tmp.path());
    let data = noise(300_000, 13);
    let dest = tmp.path().join("full.zst.age");
    seal(Cursor::new(&data), &dest, &to_recipient(&pair)).unwrap();
    let plain = tmp.path().join("full.zst");
    seal(
        Cursor::new(&data),
        &plain,
        &SealOptions::new(Encryption::None),
    )
    .unwrap();

    let cut = tmp.path().join("cut");
    for (source, key) in [
        (&dest, with_identity(&pair)),
        (&plain, UnsealOptions::new(Key::None)),
    ] {
        let bytes = std::fs::read(source).unwrap();
        let header_end = if matches!(key.key, Key::None) {
            10
        } else {
            150
        };
        for keep in [
            header_end,
            bytes.len() / 3,
            65_536 + 16 + 200,
            bytes.len() - 100,
            bytes.len() - 1,
        ] {
            std::fs::write(&cut, &bytes[..keep]).unwrap();
            let e = expect_err(unseal_all(&cut, &key));
            assert_one_sentence(&e, &cut);
            assert!(
                e.to_string().contains("truncated"),
                "cut at {keep} of {}: {e}",
                bytes.len()
            );
        }
        // With the size from a manifest, it is refused before reading.
        std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
        let e = expect_err(unseal(
            &cut,
            &UnsealOptions {
                size: Some(bytes.len() as u64),
                ..key
            },
        ));
        assert!(matches!(e.problem, Problem::Size { .. }), "{e}");
    }
}

#[test]
fn a_checksum_mismatch_is_reported_at_the_end_of_the_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a.zst");
    seal(
        Cursor::new(b"payload"),
        &dest,
        &SealOptions::new(Encryption::None),
    )
    .unwrap();
    let expected = "0".repeat(64);
    let e = expect_err(unseal_all(
        &dest,
        &UnsealOptions {
            sha256: Some(expected.clone()),
            ..UnsealOptions::new(Key::None)
        },
    ));
    assert!(
        matches!(&e.problem, Problem::Checksum { expected: x, .. } if *x == expected),
        "{e}"
    );
    assert_one_sentence(&e, &dest);
}

// ---- the walk and the temporary file ------------------------------------------------------

#[test]
fn sealing_writes_nothing_under_the_name_until_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("volume");
    make_tree(&source);
    let dest = tmp.path().join("out").join("v.tar.zst.age");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let options = SealOptions {
        stop: Some(Arc::new(move || {
            (counter.fetch_add(1, Ordering::SeqCst) > 5).then(|| "interrupted by Ctrl-C".into())
        })),
        artifact: Some("volume `data`".into()),
        ..by_passphrase()
    };
    let e = expect_err(seal_dir(&source, &dest, &options));
    assert!(matches!(e.problem, Problem::Interrupted(_)), "{e}");
    assert!(e.to_string().starts_with("volume `data` ("), "{e}");
    assert_eq!(
        std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
        0,
        "neither the archive nor its temporary file is left"
    );

    let inside = source.join("backup.tar.zst.age");
    let e = expect_err(seal_dir(&source, &inside, &by_passphrase()));
    assert!(
        e.to_string().contains("inside the directory it archives"),
        "{e}"
    );
}

#[test]
fn sockets_are_skipped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let source = dir_in(tmp.path(), "volume");
    std::fs::write(source.join("a"), "a").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(source.join("app.sock")).unwrap();
    let dest = tmp.path().join("v.tar.zst");
    let sealed = seal_dir(&source, &dest, &SealOptions::new(Encryption::None)).unwrap();
    assert_eq!(sealed.skipped, vec!["app.sock (socket)".to_string()]);
    assert_eq!(sealed.entries, Some(2));
}

// ---- hostile archives ---------------------------------------------------------------------

/// A tar entry written with raw header fields, bypassing every check of the tar crate.
struct Raw<'a> {
    path: &'a [u8],
    kind: tar::EntryType,
    link: &'a [u8],
    data: &'a [u8],
    claimed_size: Option<u64>,
}

fn raw(path: &[u8], kind: tar::EntryType) -> Raw<'_> {
    Raw {
        path,
        kind,
        link: b"",
        data: b"",
        claimed_size: None,
    }
}

fn hostile_tar(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..e.path.len()].copy_from_slice(e.path);
        header.as_gnu_mut().unwrap().linkname[..e.link.len()].copy_from_slice(e.link);
        header.set_entry_type(e.kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_size(e.claimed_size.unwrap_or(e.data.len() as u64));
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn every_escape_attempt_is_refused_with_the_entry_named() {
    use tar::EntryType as T;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let file = |path: &'static [u8]| Raw {
        data: b"pwned",
        ..raw(path, T::Regular)
    };
    let link = |path: &'static [u8], kind, target: &'static [u8]| Raw {
        link: target,
        ..raw(path, kind)
    };
    let outside_abs: &'static [u8] = Box::leak(
        format!("{}/pwned", outside.display())
            .into_bytes()
            .into_boxed_slice(),
    );
    let cases: Vec<(&str, Vec<Raw>, &str, &str)> = vec![
        (
            "absolute path",
            vec![file(outside_abs)],
            "pwned",
            "has an absolute path",
        ),
        (
            "dot-dot",
            vec![file(b"../outside/pwned")],
            "../outside/pwned",
            "contains `..`",
        ),
        (
            "dot-dot in the middle",
            vec![file(b"a/../../outside/pwned")],
            "a/../../outside/pwned",
            "contains `..`",
        ),
        (
            "through an absolute symlink",
            vec![link(b"lnk", T::Symlink, b"/tmp"), file(b"lnk/pwned")],
            "lnk/pwned",
            "would be written through the symlink `lnk`",
        ),
        (
            "through a relative symlink",
            vec![link(b"up", T::Symlink, b".."), file(b"up/outside/pwned")],
            "up/outside/pwned",
            "would be written through the symlink `up`",
        ),
        (
            "hard link to an absolute path",
            vec![link(b"h", T::Link, b"/etc/passwd")],
            "`h`",
            "has an absolute path",
        ),
        (
            "hard link with dot-dot",
            vec![link(b"h", T::Link, b"../outside/x")],
            "`h`",
            "contains `..`",
        ),
        (
            "hard link through a symlink",
            vec![
                link(b"etc", T::Symlink, b"/etc"),
                link(b"h", T::Link, b"etc/passwd"),
            ],
            "`h`",
            "is a hard link through a symlink",
        ),
        (
            "character device",
            vec![raw(b"null", T::Char)],
            "`null`",
            "is a device node",
        ),
        (
            "block device",
            vec![raw(b"sda", T::Block)],
            "`sda`",
            "is a device node",
        ),
        ("fifo", vec![raw(b"pipe", T::Fifo)], "`pipe`", "is a FIFO"),
        (
            "a claim larger than the disk",
            vec![Raw {
                claimed_size: Some(1 << 60),
                ..raw(b"huge", T::Regular)
            }],
            "`huge`",
            "claims 1152921504606846976 bytes, more than the",
        ),
    ];
    for (label, entries, entry, reason) in cases {
        let target = tmp
            .path()
            .join(format!("target-{}", label.replace(' ', "-")));
        let archive = tmp.path().join("hostile.tar");
        std::fs::write(&archive, hostile_tar(&entries)).unwrap();
        let e = expect_err(unpack(
            &archive,
            &target,
            &UnsealOptions::new(Key::None),
            &ExtractOptions::new(),
        ));
        let message = e.to_string();
        assert!(
            message.contains(entry) && message.contains(reason) && message.contains("refused"),
            "{label}: {message}"
        );
        assert_one_sentence(&e, &archive);
        assert!(!outside.exists(), "{label}: something was written outside");
        assert!(
            !Path::new("/tmp/pwned").exists(),
            "{label}: wrote /tmp/pwned"
        );
    }

    // A symlink already in the target is not followed either.
    let target = dir_in(tmp.path(), "target-existing-link");
    std::os::unix::fs::symlink(&outside, target.join("data")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let archive = tmp.path().join("hostile.tar");
    std::fs::write(&archive, hostile_tar(&[file(b"data/pwned")])).unwrap();
    let e = expect_err(unpack(
        &archive,
        &target,
        &UnsealOptions::new(Key::None),
        &ExtractOptions::new(),
    ));
    assert!(e.to_string().contains("through the symlink `data`"), "{e}");
    assert!(!outside.join("pwned").exists());

    // An entry replacing a symlink replaces the link, never writes through it.
    let target = dir_in(tmp.path(), "target-replace-link");
    std::fs::write(tmp.path().join("victim"), "safe").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("victim"), target.join("f")).unwrap();
    std::fs::write(&archive, hostile_tar(&[file(b"f")])).unwrap();
    unpack(
        &archive,
        &target,
        &UnsealOptions::new(Key::None),
        &ExtractOptions::new(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("victim")).unwrap(),
        "safe"
    );
    assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "pwned");

    // A size limit applies to the total.
    let target = tmp.path().join("target-limit");
    std::fs::write(&archive, hostile_tar(&[file(b"a"), file(b"b"), file(b"c")])).unwrap();
    let e = expect_err(unpack(
        &archive,
        &target,
        &UnsealOptions::new(Key::None),
        &ExtractOptions {
            max_bytes: Some(12),
            ..ExtractOptions::new()
        },
    ));
    assert!(
        e.to_string()
            .contains("archive entry `c` claims 5 bytes, more than the 12 allowed"),
        "{e}"
    );

    // A claim the stream does not hold is a truncation, named.
    std::fs::write(
        &archive,
        &hostile_tar(&[Raw {
            claimed_size: Some(1 << 20),
            ..file(b"short")
        }])[..1536],
    )
    .unwrap();
    let e = expect_err(unpack(
        &archive,
        &tmp.path().join("target-short"),
        &UnsealOptions::new(Key::None),
        &ExtractOptions::new(),
    ));
    assert!(
        e.to_string()
            .contains("archive entry `short`: the archive ends inside it (truncated)"),
        "{e}"
    );
}

// ---- the primitives, through the binary ---------------------------------------------------

mod primitives {
    use super::*;
    use common::{header, Workspace};

    const CANARY: &str = "canary-passphrase-7f3a9c";

    fn workspace_with_data() -> Workspace {
        let ws = Workspace::new();
        make_tree(&ws.join("data"));
        ws.write("dump.sql", &"INSERT INTO t VALUES (1);\n".repeat(1000));
        ws
    }

    #[test]
    fn pack_seal_manifest_verify_unpack_unseal_in_a_playbook() {
        let ws = workspace_with_data();
        let body = r#"
let key = crypto::age_keygen("keys/backup.txt");
let pw = env::secret("BACKUP_PASSPHRASE");
let a = archive::pack("data", "set/data.tar.zst.age", #{passphrase: pw, work_factor: 10, name: "volume data"});
let b = archive::seal("dump.sql", "set/dump.sql.zst.age", #{recipients: [key.recipient], compression: "gzip"});
manifest::write("set/manifest.json", #{artifacts: [a, b], metadata: #{stack: "shop"}});
let m = manifest::verify("set/manifest.json");
let v = archive::verify("set/data.tar.zst.age", #{passphrase: pw, sha256: a.sha256});
let u = archive::unpack("set/data.tar.zst.age", "restored", #{passphrase: pw, sha256: a.sha256, size: a.size});
archive::unseal("set/dump.sql.zst.age", "restored.sql", #{identity: key.identity_file, sha256: b.sha256});
let listed = archive::list("set/data.tar.zst.age", #{passphrase: pw});
print(`pack ${a.entries} ${a.sha256} verify ${v.entries} unpack ${u.entries} listed ${listed.len()} artifacts ${m.artifacts.len()} with ${pw}`);
"#;
        ws.write("backup.rhai", &(header("backup", &[]) + body));
        let out = ws.run_env(&["run", "backup.rhai"], &[("BACKUP_PASSPHRASE", CANARY)]);
        out.expect_code(0);
        assert!(!out.all_output().contains(CANARY), "{}", out.all_output());
        assert!(!ws.journals().contains(CANARY));
        assert!(out.stdout.contains("with ***"), "{}", out.stdout);

        let sha = sha256_file(&ws.join("set/data.tar.zst.age")).unwrap();
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(words[2], sha, "the returned SHA-256 is the file's");
        assert_eq!(words[1], words[4], "verify counts the entries pack wrote");
        assert_eq!(words[1], words[6], "unpack extracts them all");
        assert_eq!(words[1], words[8], "list lists them all");
        assert_same_tree(&ws.join("data"), &ws.join("restored"));
        assert_eq!(ws.read("restored.sql"), ws.read("dump.sql"));
        assert_eq!(
            std::fs::metadata(ws.join("keys/backup.txt"))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );

        let manifest: serde_json::Value =
            serde_json::from_str(&ws.read("set/manifest.json")).unwrap();
        assert_eq!(manifest["format"], "runbook-manifest/1");
        assert_eq!(manifest["metadata"]["stack"], "shop");
        let artifacts = manifest["artifacts"].as_array().unwrap();
        assert_eq!(artifacts[0]["name"], "volume data");
        assert_eq!(artifacts[0]["file"], "data.tar.zst.age");
        assert_eq!(artifacts[0]["sha256"], sha.as_str());
        assert_eq!(artifacts[0]["encryption"], "age-passphrase");
        assert_eq!(artifacts[1]["file"], "dump.sql.zst.age");
        assert_eq!(artifacts[1]["compression"], "gzip");
        assert_eq!(artifacts[1]["encryption"], "age-recipients");

        // Alter one artifact and lose the other: one call names both.
        let data = ws.join("set/data.tar.zst.age");
        let mut bytes = std::fs::read(&data).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&data, bytes).unwrap();
        std::fs::remove_file(ws.join("set/dump.sql.zst.age")).unwrap();
        ws.write(
            "check.rhai",
            &(header("check", &[]) + "manifest::verify(\"set/manifest.json\");\n"),
        );
        let out = ws.run(&["run", "check.rhai"]);
        out.expect_code(1);
        assert!(
            out.stderr.contains("2 of 2 artifacts do not match")
                && out
                    .stderr
                    .contains("`volume data` (data.tar.zst.age) has SHA-256")
                && out
                    .stderr
                    .contains("`dump.sql.zst.age` (dump.sql.zst.age) is missing"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn a_dry_run_plans_every_write_and_writes_nothing() {
        let ws = workspace_with_data();
        let body = r#"
let key = crypto::age_keygen("keys/backup.txt");
let a = archive::pack("data", "set/data.tar.zst.age", #{recipients: ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]});
manifest::write("set/manifest.json", #{artifacts: [a]});
archive::unpack("set/data.tar.zst.age", "restored", #{identity: key.identity_file});
archive::seal("dump.sql", "set/dump.zst", #{encrypt: false});
"#;
        ws.write("plan.rhai", &(header("plan", &[]) + body));
        let out = ws.run(&["run", "--dry-run", "plan.rhai"]);
        out.expect_code(0);
        let plan = out.all_output();
        for expected in [
            "would crypto::age_keygen: write a new age identity to",
            "would archive::pack: archive",
            "entries,",
            "bytes) to",
            "(zstd level 3, 2 workers, age to age1ql3z7",
            "would manifest::write: write the manifest of 1 artifacts to",
            "would archive::unpack: extract",
            "would archive::seal: seal",
        ] {
            assert!(plan.contains(expected), "missing `{expected}` in:\n{plan}");
        }
        for path in ["keys", "set", "restored"] {
            assert!(!ws.join(path).exists(), "the dry run created {path}");
        }
    }

    #[test]
    fn keys_must_be_secrets_and_options_are_checked() {
        let ws = workspace_with_data();
        for (script, expected) in [
            (
                r#"archive::pack("data", "x.age", #{passphrase: "literal"});"#,
                "option `passphrase` must be a Secret",
            ),
            (
                r#"archive::pack("data", "x.age", #{});"#,
                "archive::pack needs a key",
            ),
            (
                r#"archive::pack("data", "x.age", #{encrypt: false, compresion: "gzip"});"#,
                "unknown option `compresion`",
            ),
            (
                r#"archive::pack("data", "x.age", #{recipients: ["age1nope"]});"#,
                "`age1nope` is not an age recipient",
            ),
            (
                r#"archive::pack("data", "x.age", #{encrypt: false, compression: "zstd", level: 40});"#,
                "zstd level must be between 1 and 19, got 40",
            ),
        ] {
            ws.write("bad.rhai", &(header("bad", &[]) + script + "\n"));
            let out = ws.run(&["run", "bad.rhai"]);
            out.expect_code(1);
            assert!(out.stderr.contains(expected), "{script}: {}", out.stderr);
            assert!(!ws.join("x.age").exists());
        }
    }

    #[test]
    fn a_wrong_passphrase_fails_the_run_with_one_sentence() {
        let ws = workspace_with_data();
        let body = r#"
archive::pack("data", "d.tar.zst.age", #{passphrase: env::secret("RIGHT"), work_factor: 10});
archive::unpack("d.tar.zst.age", "out", #{passphrase: env::secret("WRONG"), name: "volume `data`"});
"#;
        ws.write("p.rhai", &(header("p", &[]) + body));
        let out = ws.run_env(
            &["run", "p.rhai"],
            &[
                ("RIGHT", "right-passphrase-1"),
                ("WRONG", "wrong-passphrase-2"),
            ],
        );
        out.expect_code(1);
        assert!(
            out.stderr.contains("volume `data` (")
                && out.stderr.contains("d.tar.zst.age): wrong passphrase"),
            "{}",
            out.stderr
        );
        assert!(!out.all_output().contains("right-passphrase-1"));
        assert!(!ws.join("out").join("etc").exists());
    }

    #[test]
    fn crypto_helpers() {
        let ws = Workspace::new();
        let body = r#"
let pw = crypto::random_password();
let other = crypto::random_password(12);
fs::write_secret("pw.txt", pw);
fs::write_secret("other.txt", other);
fs::write_secret("token.txt", crypto::random_token());
print(`masked ${pw}`);
print(`hmac ${crypto::hmac_sha256("Jefe", "what do ya want for nothing?")}`);
print(`hmac-secret ${crypto::hmac_sha256(env::secret("KEY"), "what do ya want for nothing?")}`);
print(`eq ${crypto::constant_time_eq(pw, pw)} ${crypto::constant_time_eq(pw, other)} ${crypto::constant_time_eq("abc", "abc")}`);
let blob = blob(3, 0x61);
print(`blob ${crypto::sha256(blob)} text ${crypto::sha256("aaa")}`);
"#;
        ws.write("c.rhai", &(header("c", &[]) + body));
        let out = ws.run_env(&["run", "c.rhai"], &[("KEY", "Jefe")]);
        out.expect_code(0);
        let pw = ws.read("pw.txt");
        assert_eq!(pw.len(), 32);
        assert!(pw.bytes().all(|b| b.is_ascii_alphanumeric()), "{pw}");
        assert_eq!(ws.read("other.txt").len(), 12);
        assert_ne!(pw, ws.read("other.txt"));
        let token = ws.read("token.txt");
        assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(out.stdout.contains("masked ***") && !out.stdout.contains(&pw));
        // RFC 4231, test case 2.
        let rfc = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(
            out.stdout.contains(&format!("hmac {rfc}")),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("hmac-secret {rfc}")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("eq true false true"), "{}", out.stdout);
        let aaa = "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0";
        assert!(
            out.stdout.contains(&format!("blob {aaa} text {aaa}")),
            "{}",
            out.stdout
        );

        ws.write(
            "ask.rhai",
            &(header("ask", &[]) + "crypto::prompt_passphrase(\"Backup passphrase:\");\n"),
        );
        let out = ws.run(&["run", "ask.rhai"]);
        out.expect_code(3);
        assert!(out.stderr.contains("no terminal"), "{}", out.stderr);
    }
}
