//! A one-file tar archive (POSIX ustar), byte-for-byte reproducible: fixed mode, owner and
//! mtime, so the same module always gives the same layer digest.
use super::OciError;

const BLOCK: usize = 512;

/// `name` (at most 100 bytes) holding `content`, followed by the two zero blocks that end an
/// archive.
pub fn single_file(name: &str, content: &[u8]) -> Result<Vec<u8>, OciError> {
    if name.is_empty() || name.len() > 100 {
        return Err(OciError::Archive(format!("file name `{name}` must be 1 to 100 bytes")));
    }
    let mut header = [0u8; BLOCK];
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0"); // mode
    put(&mut header, 108, b"0000000\0"); // uid
    put(&mut header, 116, b"0000000\0"); // gid
    put(&mut header, 124, format!("{:011o}\0", content.len()).as_bytes()); // size
    put(&mut header, 136, b"00000000000\0"); // mtime: the epoch, for reproducible digests
    put(&mut header, 148, b"        "); // checksum field counts as spaces while summing
    header[156] = b'0'; // a regular file
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{sum:06o}\0 ").as_bytes());

    let padding = (BLOCK - content.len() % BLOCK) % BLOCK;
    let mut archive = Vec::with_capacity(BLOCK + content.len() + padding + 2 * BLOCK);
    archive.extend_from_slice(&header);
    archive.extend_from_slice(content);
    archive.resize(archive.len() + padding + 2 * BLOCK, 0);
    Ok(archive)
}

fn put(header: &mut [u8; BLOCK], at: usize, bytes: &[u8]) {
    header[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The content of `name` in an archive `single_file` wrote (for tests and `pull`).
pub fn read_file(archive: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut at = 0;
    while let Some(header) = archive.get(at..at + BLOCK) {
        if header.iter().all(|b| *b == 0) {
            return None;
        }
        let entry = header.get(..100)?.split(|b| *b == 0).next()?;
        let size_field = std::str::from_utf8(header.get(124..135)?).ok()?;
        let size = usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()?;
        let body = archive.get(at + BLOCK..at + BLOCK + size)?;
        if entry == name.as_bytes() {
            return Some(body.to_vec());
        }
        at += BLOCK + size.div_ceil(BLOCK) * BLOCK;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_round_trips_and_is_reproducible() {
        let content = vec![7u8; 1300];
        let archive = single_file("plugin.wasm", &content).unwrap();
        assert_eq!(archive.len() % BLOCK, 0);
        assert_eq!(archive.len(), BLOCK + 3 * BLOCK + 2 * BLOCK);
        assert_eq!(read_file(&archive, "plugin.wasm"), Some(content.clone()));
        assert_eq!(read_file(&archive, "other"), None);
        assert_eq!(archive, single_file("plugin.wasm", &content).unwrap());
    }

    #[test]
    fn gnu_tar_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar");
        std::fs::write(&path, single_file("plugin.wasm", b"\0asm-module").unwrap()).unwrap();
        let out = std::process::Command::new("tar").arg("-xOf").arg(&path).arg("plugin.wasm").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"\0asm-module");
    }

    #[test]
    fn long_names_are_refused() {
        assert!(single_file(&"x".repeat(101), b"").is_err());
    }
}
